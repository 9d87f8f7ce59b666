"""The tiny base policy: a small Llama trained locally, cached by a hash of its recipe.

`init: sft` mirrors the paper's SFT initialisation: the model is fine-tuned on reference
traces of only a *subset* of the task's training problems (`sft_problems`), for few
epochs, so it knows the format but starts far from perfect — leaving room for RL to
improve and, possibly, to plateau. The cache key covers the task config and every knob
here, so a second run with the same recipe loads the folder instead of rebuilding it.

`init: pretrained` mirrors the paper's pretrained start: the model reads only generic
arithmetic text (`tasks.arith.arithmetic_corpus`: `a op b = c` lines, `pretrain.lines`
of them over `pretrain.operand_range`, packed `pretrain.lines_per_document` to an
example) and never a task solution; pair it with a few-shot prompt
(`task.prompt_style=fewshot`). `sft_problems` and `traces_per_problem` are unused then.

`init: pretrained_sft` does both, in that order (`pretrain_epochs` on the corpus, then
the SFT recipe): every operation is seen in generic text, and the task only through its
reference traces. With `support: {exclude_ops: [...]}` the SFT data keeps only reference
traces whose answer uses none of those operations (`tasks.support`), so a capability the
corpus showed is never demonstrated on the task — the plateau laboratory's base.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from policies.cache import cache_root, publish_folder
from policies.hf import HFPolicy
from policies.tiny import ALPHABET, build_tiny_model
from search.console import say
from tasks import Task
from tasks.arith import arithmetic_corpus
from tasks.support import SupportRule
from tasks.config import build_task, task_definition
from training.sft import SFTConfig, sft

RECIPE_VERSION = 1  # bump when the build procedure changes, so stale caches are not reused
INITS = ("sft", "pretrained", "pretrained_sft")
PRETRAIN_DEFAULTS = {"lines": 20000, "operand_range": [1, 20], "lines_per_document": 8}
#: `sft` when none is given: the recipe of conf/policy/tiny.yaml (~1.1M tokens, ~1.5 min on 2 cores)
SFT_DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 1.0e-3}


def tiny_base(
    task: DictConfig | dict,
    size: str = "1m",
    init: str = "sft",
    sft_problems: int = 300,
    traces_per_problem: int = 4,
    sft: dict | None = None,
    pretrain: dict | None = None,
    pretrain_epochs: int = 4,
    support: dict | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
    engine: dict | None = None,
) -> HFPolicy:
    """Load the cached base for this recipe, building it first if needed.

    `task` is the task's *config* (Hydra passes it unresolved with `_recursive_: false`)
    so that it can be hashed into the cache key. `engine` holds `HFPolicy`'s sampling
    options (prefix cache, prefill chunk); they leave the weights alone, so not in the key.
    """
    if init not in INITS:
        raise ValueError(f"policy.init={init!r}: choose one of {INITS}")
    task_cfg = task_definition(task)
    sft = OmegaConf.to_container(OmegaConf.create(SFT_DEFAULTS if sft is None else sft), resolve=True)
    recipe = {"version": RECIPE_VERSION, "task": task_cfg, "size": size, "init": init,
              "sft_problems": sft_problems, "traces_per_problem": traces_per_problem,
              "sft": sft, "seed": seed}
    if init != "sft":
        recipe["pretrain"] = _pretrain_recipe(pretrain)
    if init == "pretrained_sft":
        recipe["pretrain_epochs"] = pretrain_epochs
    if support and _plain(support).get("exclude_ops"):  # only restricting recipes carry the key: older caches stay valid
        recipe["support"] = {"exclude_ops": sorted(SupportRule(**_plain(support)).exclude_ops)}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "bases"
    folder = folder / f"tiny-{size}-{init}-{digest}"
    if (folder / "recipe.json").exists():
        say(f"tiny base: loaded from the cache {folder}")
    else:
        say(f"tiny base: building it once ({size}, init={init}); later runs with this recipe load it from {folder}")
        _build(folder, recipe, build_task(task_cfg), progress)
        say(f"tiny base: built and cached in {folder}")
    return HFPolicy.from_pretrained(folder, **(_plain(engine) or {}))


def _pretrain_recipe(pretrain: dict | None) -> dict:
    given = OmegaConf.to_container(OmegaConf.create(pretrain or {}), resolve=True)
    unknown = sorted(set(given) - set(PRETRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f"policy.pretrain: unknown keys {unknown}; known: {sorted(PRETRAIN_DEFAULTS)}")
    recipe = {**PRETRAIN_DEFAULTS, **given}
    if recipe["lines_per_document"] < 1:
        raise ValueError("policy.pretrain.lines_per_document: must be >= 1")
    return recipe


def pretraining_examples(pretrain: dict, seed: int) -> list[tuple[str, str]]:
    """Documents of generic arithmetic text, as (empty prompt, text) pairs for `sft`."""
    lines = arithmetic_corpus(pretrain["lines"], tuple(pretrain["operand_range"]), seed)
    per = pretrain["lines_per_document"]
    return [("", "".join(lines[i : i + per])) for i in range(0, len(lines), per)]


def reference_traces(task: Task, problem, recipe: dict) -> list[str]:
    """The first `traces_per_problem` reference traces of `problem` inside the recipe's
    support (all of them without a `support` rule)."""
    traces = task.reference_traces(problem)
    if "support" in recipe:
        rule = SupportRule(tuple(recipe["support"]["exclude_ops"]))
        traces = [t for t in traces if (a := task.extract_answer(t)) is not None and rule.covers(a)]
    return traces[: recipe["traces_per_problem"]]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def check_alphabet(task: str, texts: dict[str, list[tuple[str, str]]]) -> None:
    """Refuse, in one line, a task whose prompts or reference traces (per problem id) use a
    character outside the tiny tokenizer's alphabet: it would become <unk> silently."""
    for problem_id, pairs in texts.items():
        unknown = sorted({c for prompt, trace in pairs for c in prompt + trace} - ALPHABET)
        if unknown:
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:5])
            raise ValueError(f"task {task}: problem {problem_id} has characters the tiny tokenizer cannot "
                             f"write: {shown}; its alphabet is printable ASCII and newline (policies/tiny.py "
                             "ALPHABET): use ASCII text or a policy with a real tokenizer (policy=smollm2)")


def _build(folder: Path, recipe: dict, task: Task, progress: bool) -> None:
    torch.manual_seed(recipe["seed"])
    model, tokenizer = build_tiny_model(recipe["size"], seed=recipe["seed"])
    problems = task.problems("train", limit=recipe["sft_problems"], seed=recipe["seed"])
    if recipe["init"] == "pretrained":
        examples = pretraining_examples(recipe["pretrain"], recipe["seed"])
        per_problem = {p.id: [(task.prompt(p), "")] for p in problems}  # the prompts it will be asked
    else:
        per_problem = {p.id: [(task.prompt(p), t) for t in reference_traces(task, p, recipe)] for p in problems}
        examples = [pair for pairs in per_problem.values() for pair in pairs]
    check_alphabet(task.name, per_problem)
    if recipe["init"] == "pretrained_sft":  # generic arithmetic first: operations the SFT data may never show
        sft(model, tokenizer, pretraining_examples(recipe["pretrain"], recipe["seed"]),
            SFTConfig(**{**recipe["sft"], "epochs": recipe["pretrain_epochs"]}), seed=recipe["seed"], progress=progress)
    stats = sft(model, tokenizer, examples, SFTConfig(**recipe["sft"]), seed=recipe["seed"], progress=progress)

    def build(tmp: Path) -> None:
        HFPolicy(model, tokenizer).save(tmp)
        (tmp / "recipe.json").write_text(json.dumps({**recipe, "examples": len(examples), **stats}, indent=2))

    publish_folder(folder, build)
