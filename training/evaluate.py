"""Evaluate a policy under any search strategy, with no training:

    python -m training.evaluate task=countdown policy=tiny search=mcts search.n_simulations=16 task.limit=50
    python -m search.run ...      (the same entry point under its older name, the one the README uses)

Prints and writes (`metrics.json` in the Hydra run folder) the strategy's own answer
accuracy, maj@1 (one greedy trace), pass@1, maj@k and pass@k over the strategy's traces,
tokens and calls per problem and wall time; `trees/iter_000/` holds the JSON trees of
the first `save_trees` problems. `task.limit` (or `eval.problems`) sets how many
problems of `eval.split` are searched.

Why this lives in training/: an entry point composes every layer, and the policy it builds
may be training code (the default `policy=tiny` is `training.base_model.tiny_base`, which
fine-tunes the base on first use). Entry points therefore sit at the top, beside
`training.run`, and search/ keeps only what a search needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from search.budget import Budget
from search.config_check import RUN, SEARCH, check_or_exit
from search.config_errors import composition_errors
from search.console import quiet_in_parallel, say
from search.metrics import accuracy, summarize
from search.policy_eval import greedy_results
from search.run_folder import RunFolder, strict_json, write_atomic
from search.threads import use_threads
from tasks.config import build_task, use_tokenizer
from training.config_check import TABLES
from training.schema import store_schema

store_schema()  # conf/config.yaml's schema, before Hydra composes


def evaluate_search(cfg: DictConfig, out_dir: str | Path = ".") -> dict[str, Any]:
    """Search `eval.split` with the configured strategy and write `metrics.json` and trees
    into `out_dir`; returns the metrics."""
    from search.health import search_health, value_auc  # torch and scipy: only once the config is known to be valid
    from training.seeding import seed_everything

    seed_everything(cfg.seed)
    quiet_in_parallel(cfg)
    task = build_task(cfg.task)
    limit = cfg.task.get("limit") or cfg.eval.problems
    policy = instantiate(cfg.policy)
    use_tokenizer(task, policy.tokenizer)
    strategy = instantiate(cfg.search)
    budget = Budget(**OmegaConf.to_container(cfg.budget, resolve=True))
    problems = task.problems(cfg.task.get("split") or cfg.eval.split, limit=limit, seed=cfg.seed)
    results = strategy.search(problems, policy, task, budget)
    summary = summarize(task, results, cfg.eval.k)
    greedy = greedy_results(policy, task, problems, cfg.eval.max_new_tokens, cfg.progress)
    metrics = {"strategy": strategy.name, "problems": len(results), "k": cfg.eval.k, "maj@1": accuracy(task, greedy),
               **summary, **search_health(results, budget),
               **value_auc(results, policy, task, seed=cfg.seed, **cfg.health),
               "wall_time_s": sum(r.wall_time for r in results)}
    folder = RunFolder(out_dir)
    write_atomic(folder.root / "metrics.json", strict_json(metrics, indent=2))
    folder.write_trees(0, results, cfg.save_trees)
    return metrics


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict[str, Any]:
    check_or_exit(cfg, RUN, SEARCH)
    use_threads(cfg.get("threads"))
    out_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    say(f"run folder: {out_dir}")
    metrics = evaluate_search(cfg, out_dir)
    say("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    say(f"run folder: {out_dir} (metrics.json, trees/)")
    return metrics


if __name__ == "__main__":
    with composition_errors(*TABLES):  # the names of the whole config's knobs in its messages
        main()
