"""The iteration-0 evaluation, computed once for all the cells of a sweep that share it.

Every cell of the laboratory's grid with the same seed starts from the same cached base and
evaluates it on the same problems with the same sampling seed, so its iteration-0 row is
the same numbers whatever the strategy or trainer. With `eval.cache_base: true` the first
cell to get there computes the row and stores it under `$PLATEAU_CACHE/evals/`, keyed by a
hash of everything the row depends on: the policy and task configs, the eval config, the
seed, the task class the loop evaluates (a trainer may wrap it: RCRL conditions its
prompts), torch's thread count (float reductions, hence samples, can differ with it) and
the source of the code that makes the row (`ROW_SOURCES`), so that a change to it makes a
new key instead of reusing rows the old code computed. The others read it, which saves one
64-sample pass per cell.

Off by default: it is only sound when the config determines the weights (a cached tiny
base or fixed released weights); a run started from anything else must not turn it on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from policies.cache import cache_root, publish_folder
from search.console import say

ROW_FILE = "row.json"
ROOT = Path(__file__).resolve().parents[1]
ROW_SOURCES = (
    "policies", "tasks",  # the base's weights, the samples, prompts, answers, rewards, solutions and slices
    "training/base_model.py", "training/sft.py", "training/core_algos.py",  # the base's build; the lab's entropy
    "search/policy_eval.py", "search/sampling.py", "search/expand.py", "search/budget.py", "search/tree.py",
    "search/result.py", "search/metrics.py",  # the eval samples, the traces read off them, and the estimators
    "training/loop.py", "training/lab_eval.py", "training/instruments.py",  # the row and the lab's instruments
    "training/rcrl.py",  # the conditioned task RCRL's runs evaluate
    "training/seeding.py",  # how the loop seeds the process before it builds the base
)
"""The files (a folder: every .py under it) whose source the key hashes: what computes an
iteration-0 row. Search strategies and trainers stay out: every cell shares the row."""


def row_code_version(root: Path = ROOT, sources: tuple[str, ...] = ROW_SOURCES) -> str:
    """A hash of the source of `sources` under `root` (relative paths and contents)."""
    digest = hashlib.sha256()
    for source in sources:
        path = root / source
        if not path.exists():
            raise FileNotFoundError(f"eval_cache.ROW_SOURCES names {source}, which is not in {root}")
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{file.relative_to(root).as_posix()}\0".encode() + file.read_bytes() + b"\0")
    return digest.hexdigest()


CODE_VERSION = row_code_version()
"""Hashed once, when the process loads this code: a long-lived sweep worker that outlives an
edit of the sources keys its rows by the code it runs, not by what is on disk by then."""


def base_eval_key(cfg: DictConfig, task_class: str) -> str:
    """The hash naming a run's iteration-0 row."""
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    if isinstance(policy, dict):  # sampling options and console output leave the numbers alone
        policy = {k: v for k, v in policy.items() if k not in ("engine", "progress", "cache_dir")}
    evaluation = {k: v for k, v in OmegaConf.to_container(cfg.eval, resolve=True).items() if k != "cache_base"}
    recipe = {"code": CODE_VERSION, "policy": policy, "task": OmegaConf.to_container(cfg.task, resolve=True),
              "eval": evaluation, "seed": cfg.seed, "task_class": task_class, "threads": torch.get_num_threads()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_base_eval(cfg: DictConfig, task_class: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`compute()`, or the row a previous run with the same key stored (`eval.cache_base`)."""
    if not cfg.eval.get("cache_base"):
        return compute()
    folder = cache_root() / "evals" / base_eval_key(cfg, task_class)
    stored = folder / ROW_FILE
    if stored.is_file():
        say(f"eval: iteration 0 read from the cache {folder} (eval.cache_base)")
        return json.loads(stored.read_text())
    row = compute()
    publish_folder(folder, lambda tmp: (tmp / ROW_FILE).write_text(json.dumps(row)),
                   finished=lambda f: (f / ROW_FILE).is_file())
    return row

