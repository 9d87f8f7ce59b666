"""The iteration loop: search → train → evaluate → checkpoint, resumable.

One iteration searches the training problems with the configured strategy, hands the
results to the trainer, evaluates the updated policy (maj@1 greedy, maj@k and pass@k from
k samples), and checkpoints. Iteration 0 is the evaluation of the initial policy.
Strategies are re-instantiated each iteration with a seed derived from the run seed and
the iteration, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from policies import Policy
from search import Budget, SearchResult
from policies.seeding import seed_everything
from search.console import quiet_in_parallel, say
from search.metrics import evaluate_policy
from search.run_folder import RunFolder
from search.view import write_view
from tasks import Problem, Task
from tasks.config import build_task, use_tokenizer
from training.plots import plot_run
from training.trainer import Trainer

COMPLETE = "COMPLETE"  # marker file: a checkpoint folder without it is ignored on resume


def derived_seed(seed: int, iteration: int, stream: int) -> int:
    """Independent, reproducible seeds per (run, iteration, purpose)."""
    return (seed * 1_000_003 + iteration * 1_009 + stream) % 2**31


def evaluate(policy: Policy, task: Task, problems: list[Problem], cfg: DictConfig, seed: int,
             progress: bool = False) -> dict[str, float]:
    return evaluate_policy(policy, task, problems, cfg.k, cfg.temperature, cfg.max_new_tokens, seed, progress)


def _train_summary(results: list[SearchResult]) -> dict[str, float]:
    traces = [t for r in results for t in r.traces()]
    return {
        "train_reward": sum(t.reward for t in traces) / max(1, len(traces)),
        "train_solved": sum(any(t.reward >= 1.0 for t in r.traces()) for r in results) / max(1, len(results)),
        "search_tokens": sum(r.tokens for r in results),
        "search_calls": max((r.calls for r in results), default=0),
        "n_traces": len(traces),
    }


def _save_checkpoint(folder: RunFolder, iteration: int, policy: Policy, trainer: Trainer,
                     rows: list[dict[str, Any]]) -> None:
    final = folder.checkpoint_dir(iteration)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save(tmp)
    torch.save({"trainer": trainer.state_dict(), "iteration": iteration, "metrics": rows,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}},
               tmp / "trainer_state.pt")
    (tmp / COMPLETE).write_text("")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _last_checkpoint(folder: RunFolder) -> Path | None:
    done = sorted(p for p in (folder.root / "checkpoints").glob("iter_[0-9][0-9][0-9]") if (p / COMPLETE).exists())
    return done[-1] if done else None


def _resume(folder: RunFolder, policy: Policy, trainer: Trainer) -> tuple[int, list[dict[str, Any]]]:
    """Restore the last complete iteration; returns it and the metrics rows up to it
    ((0, []) when there is none)."""
    ckpt = _last_checkpoint(folder)
    if ckpt is None:
        return 0, []
    policy.update_weights(ckpt)
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    trainer.load_state_dict(state["trainer"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return state["iteration"], state["metrics"]


def run(cfg: DictConfig, out_dir: str | Path = ".") -> list[dict[str, Any]]:
    """Run (or resume) the experiment `cfg` in `out_dir`; returns the metrics rows."""
    seed_everything(cfg.seed)
    quiet_in_parallel(cfg)
    folder = RunFolder(out_dir)
    say(f"run folder: {folder.root.resolve()}")
    task = build_task(cfg.task)
    policy: Policy = instantiate(cfg.policy)
    use_tokenizer(task, policy.tokenizer)
    trainer: Trainer = instantiate(cfg.trainer)
    task = trainer.setup(policy, task)
    budget = Budget(**cfg.budget)
    train_problems = task.problems("train", limit=cfg.train_problems, seed=cfg.seed)
    eval_problems = task.problems(cfg.eval.split, limit=cfg.eval.problems, seed=cfg.seed)

    start, rows = _resume(folder, policy, trainer) if cfg.resume else (0, [])
    if not rows:
        rows = [{"iteration": 0, "kind": "eval", "cumulative_tokens": 0,
                 **evaluate(policy, task, eval_problems, cfg.eval, derived_seed(cfg.seed, 0, 1), cfg.progress)}]
        folder.write_metrics(rows)
        _print_row(rows[-1], None)
    cumulative = rows[-1]["cumulative_tokens"]
    for iteration in range(start + 1, cfg.iterations + 1):
        strategy = instantiate(cfg.search, seed=derived_seed(cfg.seed, iteration, 0))
        started = time.perf_counter()
        results = strategy.search(train_problems, policy, task, budget)
        train = _train_summary(results)
        cumulative += train["search_tokens"]
        folder.write_traces(iteration, results)
        folder.write_trees(iteration, results, cfg.save_trees)
        train.update(trainer.step(iteration, results))
        policy.update_weights()
        train["train_time"] = time.perf_counter() - started
        rows.append({"iteration": iteration, "kind": "train", "cumulative_tokens": cumulative, **train})
        rows.append({"iteration": iteration, "kind": "eval", "cumulative_tokens": cumulative,
                     **evaluate(policy, task, eval_problems, cfg.eval, derived_seed(cfg.seed, iteration, 1), cfg.progress)})
        _save_checkpoint(folder, iteration, policy, trainer, rows)
        folder.write_metrics(rows)
        _print_row(rows[-1], rows[-2])
    plot_run(folder.root)
    if cfg.save_trees:
        write_view(folder.root)
    say(f"run folder: {folder.root.resolve()} (metrics.jsonl, plots/{', tree_viewer.html' if cfg.save_trees else ''})")
    return rows


def _print_row(eval_row: dict[str, Any], train_row: dict[str, Any] | None) -> None:
    if train_row is None:
        say(f"{'iter':>4} {'train_reward':>12} {'maj@1':>6} {'maj@k':>6} {'pass@k':>6} {'valid@k':>7} {'distinct':>8} "
            f"{'tokens':>9}")
    reward = f"{train_row['train_reward']:.3f}" if train_row else "-"
    say(f"{eval_row['iteration']:>4} {reward:>12} {eval_row['maj@1']:>6.3f} {eval_row['maj@k']:>6.3f} "
        f"{eval_row['pass@k']:>6.3f} {eval_row['trace_valid@k']:>7.3f} {eval_row['distinct_correct']:>8.2f} "
        f"{eval_row['cumulative_tokens']:>9}")
