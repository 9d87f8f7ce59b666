"""Evaluate a policy under any search strategy, with no training:

    python -m search.run task=countdown policy=tiny search=mcts search.n_simulations=16 +task.limit=50

Prints and writes (`metrics.json` in the Hydra run folder) the strategy's own answer
accuracy, maj@1, maj@k, pass@k, tokens spent and wall time; `trees/` holds the JSON
trees of the first `save_trees` problems. `task.limit` (or `eval.problems`) sets how many
problems of `eval.split` are searched.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from math import comb
from pathlib import Path

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from search.budget import Budget
from search.result import SearchResult
from tasks import Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n traces of which c are correct (Chen et al., 2021).
    Kept here because search may not import training; training.metrics has the same."""
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def evaluate(task: Task, results: list[SearchResult], k: int) -> dict[str, float]:
    """Per-batch means: the strategy's answer, maj@1 (expected single-trace accuracy),
    maj@k and pass@k over the first k finished traces (k capped by what was found)."""
    answer = maj1 = majk = passk = 0.0
    for r in results:
        traces = r.traces()
        answer += task.check_answer(r.problem, r.answer)
        if not traces:
            continue
        correct = sum(t.reward >= 1.0 for t in traces)
        maj1 += correct / len(traces)
        votes = Counter(t.answer for t in traces[:k] if t.answer is not None)
        top = max(votes, key=lambda a: (votes[a], -[t.answer for t in traces].index(a))) if votes else None
        majk += task.check_answer(r.problem, top)
        passk += pass_at_k(len(traces), correct, min(k, len(traces)))
    n = max(1, len(results))
    return {"answer_accuracy": answer / n, "maj@1": maj1 / n, f"maj@{k}": majk / n, f"pass@{k}": passk / n,
            "tokens_per_problem": sum(r.tokens for r in results) / n,
            "calls_per_problem": sum(r.calls for r in results) / n,
            "wall_time_s": sum(r.wall_time for r in results), "problems": len(results)}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict[str, float]:
    seed_everything(cfg.seed)
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    limit = task_cfg.pop("limit", None) or cfg.eval.problems
    task: Task = instantiate(task_cfg)
    with open_dict(cfg):
        cfg.task = task_cfg  # the policy recipe hashes the task config, without `limit`
    policy = instantiate(cfg.policy)
    strategy = instantiate(cfg.search)
    budget = Budget(**OmegaConf.to_container(cfg.budget, resolve=True))
    problems = task.problems(cfg.eval.split, limit=limit, seed=cfg.seed)
    results = strategy.search(problems, policy, task, budget)
    metrics = {"strategy": strategy.name, **evaluate(task, results, cfg.eval.k)}
    out = Path(cfg.get("out_dir", "."))
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    for r in results[: cfg.get("save_trees", 8)]:
        write_atomic(out / "trees" / f"{r.problem.id}.json", r.tree.dumps())
    print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics


if __name__ == "__main__":
    main()
