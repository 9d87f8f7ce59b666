"""The tiny base policy: a small Llama trained locally, cached by a hash of its recipe.

`init: sft` mirrors the paper's SFT initialisation: the model is fine-tuned on reference
traces of only a *subset* of the task's training problems (`sft_problems`), for few
epochs, so it knows the format but starts far from perfect — leaving room for RL to
improve and, possibly, to plateau. The cache key covers the task config and every knob
here, so a second run with the same recipe loads the folder instead of rebuilding it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from tasks import Task
from tasks.config import build_task, task_definition
from training.sft import SFTConfig, sft

RECIPE_VERSION = 1  # bump when the build procedure changes, so stale caches are not reused


def default_cache_dir() -> Path:
    return Path(os.environ.get("PLATEAU_CACHE", Path.home() / ".cache" / "plateau")) / "bases"


def tiny_base(
    task: DictConfig | dict,
    size: str = "1m",
    init: str = "sft",
    sft_problems: int = 200,
    traces_per_problem: int = 1,
    sft: dict | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
) -> HFPolicy:
    """Load the cached base for this recipe, building it first if needed.

    `task` is the task's *config* (Hydra passes it unresolved with `_recursive_: false`)
    so that it can be hashed into the cache key.
    """
    if init != "sft":
        raise ValueError(f"policy.init={init!r}: this build supports 'sft' only")
    task_cfg = task_definition(task)
    sft = OmegaConf.to_container(OmegaConf.create(sft or {}), resolve=True)
    recipe = {"version": RECIPE_VERSION, "task": task_cfg, "size": size, "init": init,
              "sft_problems": sft_problems, "traces_per_problem": traces_per_problem,
              "sft": sft, "seed": seed}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = folder / f"tiny-{size}-{init}-{digest}"
    if not (folder / "recipe.json").exists():
        _build(folder, recipe, build_task(task_cfg), progress)
    return HFPolicy.from_pretrained(folder)


def _build(folder: Path, recipe: dict, task: Task, progress: bool) -> None:
    torch.manual_seed(recipe["seed"])
    model, tokenizer = build_tiny_model(recipe["size"], seed=recipe["seed"])
    problems = task.problems("train", limit=recipe["sft_problems"], seed=recipe["seed"])
    examples = [(task.prompt(p), trace) for p in problems
                for trace in task.reference_traces(p)[: recipe["traces_per_problem"]]]
    stats = sft(model, tokenizer, examples, SFTConfig(**recipe["sft"]), seed=recipe["seed"], progress=progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".building-"))
    try:
        HFPolicy(model, tokenizer).save(tmp)
        (tmp / "recipe.json").write_text(json.dumps({**recipe, "examples": len(examples), **stats}, indent=2))
        if folder.exists():  # a concurrent build finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
