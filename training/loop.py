"""The iteration loop: search → train → evaluate → checkpoint, resumable.

One iteration searches the training problems with the configured strategy, hands the
results to the trainer, evaluates the updated policy (maj@1 greedy, maj@k and pass@k from
k samples), and checkpoints. Iteration 0 is the evaluation of the initial policy.
Strategies are re-instantiated each iteration with a seed derived from the run seed and
the iteration, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from policies import Policy, TrainablePolicy
from search import Budget, SearchResult
from search.health import search_health, value_auc
from search.console import quiet_in_parallel, say
from search.policy_eval import evaluate_policy
from search.metrics import trace_valid
from search.run_folder import RunFolder
from search.view import write_view
from tasks import Problem, Task
from tasks.config import build_task, use_tokenizer
from training.checkpoint import resume, save_checkpoint
from training.cluster import Searcher, build_searcher, build_step_runner
from training.orm import ORMTraining, WithORM, build_run_orm, strategy_overrides
from training.eval_cache import cached_base_eval
from training.lab_eval import lab_due, lab_metrics
from training.plots import plot_run
from training.seeding import derived_seed, seed_everything
from training.tracking import open_tracking
from training.trainer import Trainer
from training.update_shift import draw_probe, logp_shift, round_traces, trace_logps


def evaluate(policy: Policy, task: Task, problems: list[Problem], cfg: DictConfig, seed: int,
             progress: bool = False, scorer: Any = None, base: Policy | None = None, lab: bool = True) -> dict[str, Any]:
    """The eval row: `search.policy_eval.evaluate_policy`, and the laboratory's instruments
    (`training.lab_eval`) when `eval.lab` is set and `lab` (`base` is then the iteration-0 policy);
    the lab's per-slice maj@1 reads the greedy verdicts of the row's maj@1 (one greedy decode)."""
    evaluated = evaluate_policy(policy, task, problems, cfg.k, cfg.temperature, cfg.max_new_tokens, seed, progress,
                                scorer)
    row: dict[str, Any] = evaluated.row
    if lab and cfg.get("lab"):
        row.update(lab_metrics(policy, base, task, problems, cfg.lab, seed + 7, evaluated.greedy_correct, progress))
    return row


def _train_summary(results: list[SearchResult], budget: Budget, policy: Policy, task: Task, cfg: DictConfig,
                   seed: int) -> dict[str, float]:
    """The round's reward, spend and health figures (`search.health`), before training."""
    traces = [t for r in results for t in r.traces()]
    return {
        "train_reward": sum(t.reward for t in traces) / max(1, len(traces)),
        "train_solved": sum(any(trace_valid(t) for t in r.traces()) for r in results) / max(1, len(results)),
        "search_tokens": sum(r.tokens for r in results),
        "search_calls": max((r.calls for r in results), default=0),
        "n_traces": len(traces),
        **search_health(results, budget),
        **value_auc(results, policy, task, seed=seed, **cfg.health),
    }


def run(cfg: DictConfig, out_dir: str | Path = ".") -> list[dict[str, Any]]:
    """Run (or resume) the experiment `cfg` in `out_dir`; returns the metrics rows."""
    seed_everything(cfg.seed)
    quiet_in_parallel(cfg)
    folder = RunFolder(out_dir)
    say(f"run folder: {folder.root.resolve()}")
    task, policy, base, orm, trainer = _build(cfg)
    scorer = orm.model.score_traces if cfg.eval.get("rerank") == "orm" else None  # rerank@k in eval rows
    budget = Budget(**cfg.budget)
    train_problems = task.problems("train", limit=cfg.train_problems, seed=cfg.seed)
    eval_problems = task.problems(cfg.eval.split, limit=cfg.eval.problems, seed=cfg.seed)

    def eval_row(iteration: int, lab: bool = True) -> dict[str, Any]:
        """The policy's eval after `iteration` (with the lab's instruments when `lab`)."""
        return evaluate(policy, task, eval_problems, cfg.eval, derived_seed(cfg.seed, iteration, 1), cfg.progress,
                        scorer, base, lab)

    start, rows = resume(folder, policy, trainer) if cfg.resume else (0, [])
    if rows and start >= cfg.iterations:
        say(f"resume: the run in {folder.root} already finished iteration {start} of iterations={cfg.iterations}; "
            "nothing to do (raise iterations to continue it)")
        return rows
    tracking = open_tracking(cfg, folder.root, already_logged=len(rows))  # cfg.logger: TensorBoard, MLflow
    if not rows:
        shared = cached_base_eval(cfg, type(task).__qualname__, lambda: eval_row(0)) if scorer is None else eval_row(0)
        rows = [{"iteration": 0, "kind": "eval", "cumulative_tokens": 0, **shared}]
        folder.write_metrics(rows)
        tracking.log(rows)
        _print_row(rows[-1], None)
    cumulative = rows[-1]["cumulative_tokens"]
    searcher = build_searcher(cfg, strategy_overrides(cfg, orm))  # cfg.cluster: this process, or Ray workers
    for iteration in range(start + 1, cfg.iterations + 1):
        train = _search_and_train(cfg, iteration, searcher, trainer, policy, task, budget, train_problems, folder)
        cumulative += train["search_tokens"]
        rows.append({"iteration": iteration, "kind": "train", "cumulative_tokens": cumulative, **train})
        rows.append({"iteration": iteration, "kind": "eval", "cumulative_tokens": cumulative,
                     **eval_row(iteration, lab_due(cfg.eval.lab, iteration, cfg.iterations))})
        save_checkpoint(folder, iteration, policy, trainer, rows)
        folder.write_metrics(rows)
        tracking.log(rows)
        _print_row(rows[-1], rows[-2])
    searcher.close()
    tracking.close()
    _draw(cfg, folder)
    return rows


def _search_and_train(cfg: DictConfig, iteration: int, searcher: Searcher, trainer: Trainer, policy: TrainablePolicy,
                      task: Task, budget: Budget, problems: list[Problem], folder: RunFolder) -> dict[str, Any]:
    """One iteration's search of the training problems (its traces and trees written) and the
    trainer's step on the results; returns the train row's figures."""
    started = time.perf_counter()
    results = searcher.search(problems, policy, task, budget, derived_seed(cfg.seed, iteration, 0))
    train = _train_summary(results, budget, policy, task, cfg, derived_seed(cfg.seed, iteration, 2))
    train.update(searcher.stats())  # cluster=ray: shards_retried
    folder.write_traces(iteration, results)
    folder.write_trees(iteration, results, cfg.save_trees)
    searched = time.perf_counter()
    probe = draw_probe(round_traces(results), cfg.update_shift_traces, derived_seed(cfg.seed, iteration, 3))
    before = trace_logps(policy, probe)
    train.update(trainer.step(iteration, results))
    policy.update_weights()
    train.update(logp_shift(probe, before, trace_logps(policy, probe)))
    done = time.perf_counter()
    # train_time is the whole round (its name is older than the split)
    train.update(search_time=searched - started, update_time=done - searched, train_time=done - started)
    return train


def _build(cfg: DictConfig) -> tuple[Task, TrainablePolicy, Policy | None, ORMTraining | None, Trainer]:
    """The run's pieces from its config: the task the loop searches (the trainer's, after
    `setup`), the policy, a frozen base for `eval.lab`, the run's ORM and the trainer."""
    task = build_task(cfg.task)
    policy: TrainablePolicy = instantiate(cfg.policy)
    base: Policy | None = instantiate(cfg.policy) if cfg.eval.get("lab") else None  # frozen: base_nll
    use_tokenizer(task, policy.tokenizer)
    orm = build_run_orm(cfg, policy)  # None unless trainer.reward, the search evaluator or eval.rerank uses it
    runner = build_step_runner(cfg)  # cluster.train_workers > 1: the trainer's step runs data-parallel on Ray Train
    trainer: Trainer = instantiate(cfg.trainer, **({"orm": orm.model} if cfg.trainer.get("reward") == "orm" else {}),
                                   **({"runner": runner} if runner is not None else {}))
    trainer = WithORM(trainer, orm) if orm is not None else trainer  # fits the ORM each round, checkpoints it
    return trainer.setup(policy, task), policy, base, orm, trainer


def _draw(cfg: DictConfig, folder: RunFolder) -> None:
    """The run's plots and, when it searched trees, its tree viewer."""
    plot_run(folder.root)
    viewer = bool(cfg.save_trees) and cfg.iterations > 0  # iteration 0 only evaluates: it searches no trees
    if viewer:
        write_view(folder.root)
    say(f"run folder: {folder.root.resolve()} (metrics.jsonl, plots/{', tree_viewer.html' if viewer else ''})")


def _print_row(eval_row: dict[str, Any], train_row: dict[str, Any] | None) -> None:
    if train_row is None:
        say(f"{'iter':>4} {'train_reward':>12} {'maj@1':>6} {'maj@k':>6} {'pass@k':>6} {'valid@k':>7} {'distinct':>8} "
            f"{'tokens':>9}")
    reward = f"{train_row['train_reward']:.3f}" if train_row else "-"
    say(f"{eval_row['iteration']:>4} {reward:>12} {eval_row['maj@1']:>6.3f} {eval_row['maj@k']:>6.3f} "
        f"{eval_row['pass@k']:>6.3f} {eval_row['trace_valid@k']:>7.3f} {eval_row['distinct_correct']:>8.2f} "
        f"{eval_row['cumulative_tokens']:>9}")
