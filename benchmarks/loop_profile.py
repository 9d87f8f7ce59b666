"""Where the wall time of one study cell goes (a script, not a test: it prints shares
measured in one run and asserts nothing).

    python -m benchmarks.loop_profile --threads 1 iterations=1 train_problems=16 eval.problems=16   # a check
    python -m benchmarks.loop_profile                              # the default cell of +experiment=plateau
    python -m benchmarks.loop_profile +equal_spend=tot trainer=ppo  # another cell

It composes `config` with `+experiment=plateau` (sampling + EI, seed 0: the sweep's first
cell) and any Hydra overrides given, runs `training.loop.run` in a temporary folder, and
times the loop's phases by wrapping what `training.loop` calls:

  search      the searcher's (or strategy's) `search` over the train problems
  health      the round's reward/spend summary and value_auc rollouts (`_train_summary`)
  train       `trainer.step` (the ORM fit of `WithORM`, if any, lands in other)
  eval        `evaluate` before the first and after every iteration
  checkpoint  `save_checkpoint` and the metrics file
  writes      traces and trees of each iteration
  plots       the run's plots and tree viewer
  other       the rest: building the policy, task and trainer, Python between phases

The `model` column is the time inside `policy.sample` / `policy.logprobs` within each phase.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from benchmarks.timing import timed
import training.loop as loop
from search.run_folder import RunFolder
from training.schema import store_schema

CONF = Path(__file__).resolve().parents[1] / "conf"
store_schema()  # conf/config.yaml names the schema (training/schema.py): registered before composing
PHASES = ["search", "health", "train", "eval", "checkpoint", "writes", "plots"]


class PhaseClock:
    """Wall seconds per phase, and model seconds per phase (the phase running at the time)."""

    def __init__(self):
        self.wall = {p: 0.0 for p in PHASES}
        self.model = {p: 0.0 for p in [*PHASES, "other"]}
        self.current = "other"

    def phase(self, label: str, fn):
        clocked = timed(fn, functools.partial(self._add_wall, label))

        @functools.wraps(fn)
        def in_phase(*args, **kwargs):
            if self.current == label:  # a wrapped call inside its own phase counts once
                return fn(*args, **kwargs)
            outer, self.current = self.current, label
            try:
                return clocked(*args, **kwargs)
            finally:
                self.current = outer

        return in_phase

    def model_call(self, fn):
        return timed(fn, self._add_model)

    def _add_wall(self, label: str, seconds: float) -> None:
        self.wall[label] += seconds

    def _add_model(self, seconds: float) -> None:
        self.model[self.current] += seconds  # the phase running when the call returns: the caller's


def instrument(clock: PhaseClock) -> None:
    """Wrap the loop's phases where `training.loop` looks them up."""
    for name, label in (("evaluate", "eval"), ("_train_summary", "health"), ("save_checkpoint", "checkpoint"),
                        ("plot_run", "plots"), ("write_view", "plots")):
        setattr(loop, name, clock.phase(label, getattr(loop, name)))
    for name, label in (("write_traces", "writes"), ("write_trees", "writes"), ("write_metrics", "checkpoint")):
        setattr(RunFolder, name, clock.phase(label, getattr(RunFolder, name)))
    built = loop.instantiate

    def instantiate(config, *args, **kwargs):
        obj = built(config, *args, **kwargs)
        if hasattr(obj, "sample") and hasattr(obj, "tokenizer"):  # the policy
            obj.sample, obj.logprobs = clock.model_call(obj.sample), clock.model_call(obj.logprobs)
        elif hasattr(obj, "search"):
            obj.search = clock.phase("search", obj.search)
        elif hasattr(obj, "step") and hasattr(obj, "setup"):  # the trainer
            obj.step = clock.phase("train", obj.step)
        return obj

    loop.instantiate = instantiate
    if hasattr(loop, "build_searcher"):  # the loop builds its searcher (local or cluster) once

        def build_searcher(*args, **kwargs):
            searcher = built_searcher(*args, **kwargs)
            searcher.search = clock.phase("search", searcher.search)
            return searcher

        built_searcher, loop.build_searcher = loop.build_searcher, build_searcher


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides after +experiment=plateau")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=plateau", *args.overrides])
    clock = PhaseClock()
    instrument(clock)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loop_profile_") as folder:
        loop.run(cfg, folder)
    total = time.perf_counter() - started
    other = total - sum(clock.wall.values())
    print(f"\ntorch threads {torch.get_num_threads()}; overrides {args.overrides}; "
          f"{cfg.iterations} iterations x {cfg.train_problems} train problems, {cfg.eval.problems} eval problems")
    print(f"{'phase':11} {'wall s':>8} {'share':>6} {'model s':>8} {'model share':>11}")
    for label, wall in [*clock.wall.items(), ("other", other)]:
        model = clock.model[label]
        print(f"{label:11} {wall:8.1f} {wall / total:6.0%} {model:8.1f} {model / wall if wall else 0:11.0%}")
    print(f"{'total':11} {total:8.1f} {1:6.0%} {sum(clock.model.values()):8.1f} {sum(clock.model.values()) / total:11.0%}")


if __name__ == "__main__":
    main()
