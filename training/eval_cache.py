"""The iteration-0 evaluation, computed once for all the cells of a sweep that share it.

Every cell of the laboratory's grid with the same seed starts from the same cached base and
evaluates it on the same problems with the same sampling seed, so its iteration-0 row is
the same numbers whatever the strategy or trainer. With `eval.cache_base: true` the first
cell to get there computes the row and stores it under `$PLATEAU_CACHE/evals/`, keyed by a
hash of everything the row depends on: the policy and task configs, the eval config, the
seed, the task class the loop evaluates (a trainer may wrap it: RCRL conditions its
prompts) and torch's thread count (float reductions, hence samples, can differ with it).
The others read it, which saves one 64-sample pass per cell.

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

VERSION = 1  # bump when an eval row's contents change, so stale rows are not reused
ROW_FILE = "row.json"


def base_eval_key(cfg: DictConfig, task_class: str) -> str:
    """The hash naming a run's iteration-0 row."""
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    if isinstance(policy, dict):  # sampling options and console output leave the numbers alone
        policy = {k: v for k, v in policy.items() if k not in ("engine", "progress", "cache_dir")}
    evaluation = {k: v for k, v in OmegaConf.to_container(cfg.eval, resolve=True).items() if k != "cache_base"}
    recipe = {"version": VERSION, "policy": policy, "task": OmegaConf.to_container(cfg.task, resolve=True),
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

