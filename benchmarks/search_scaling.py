"""Search time per problem as the number of problems grows, and where it goes (a script,
not a test: it prints ratios measured in one run and asserts nothing).

    python -m benchmarks.search_scaling --threads 1 --problems 16 64          # a check, minutes
    python -m benchmarks.search_scaling --problems 16 64 256 1024 \
        --override task.number_range=[1,9] task.target_range=[2,40] task.train_size=1789   # the issue-14 table
    python -m benchmarks.search_scaling --strategies tot mcts --override policy.engine.prefix_cache_tokens=0

Every strategy of `conf/equal_spend/` (sized there to spend the whole budget) searches the
first P Countdown train problems with the default tiny base and a fixed per-problem
budget (`--budget`, default 512 tokens), for each P. The default Countdown task has 444
train problems; the overrides above (the plateau laboratory's ranges) give 1,789. The
prefix cache is emptied before every search, so a larger P never profits from a smaller
one's KV.

Columns: wall seconds; s/problem; x/first = s/problem over the same strategy's at the
smallest P (target: within 1.25 up to 1,024 problems); model = share of wall time inside
`policy.sample` / `policy.logprobs`, of which prefill = the engine's prefill passes and
cache = the prefix cache's own bookkeeping (lookups, inserts, evictions); python = the rest
of the wall time (tree bookkeeping, evaluators, verifiers); the issue-14 target is
python + cache <= 20%; tokens = generated tokens per problem.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from hydra.utils import instantiate

from benchmarks.search_budget import load
from benchmarks.timing import timed
from search.budget import Budget
from tasks.config import build_task, use_tokenizer

STRATEGIES = ["sampling", "tot", "tot_dfs", "mcts", "evolution", "best_first"]


class Clock:
    """Seconds spent inside wrapped callables, per label."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    def wrap(self, label: str, fn):
        return timed(fn, functools.partial(self.add, label))


def instrument(policy, clock: Clock) -> None:
    """Time the policy's model calls (and the engine's prefill inside them) in place."""
    policy.sample = clock.wrap("model", policy.sample)
    policy.logprobs = clock.wrap("model", policy.logprobs)
    engine = getattr(policy, "engine", None)
    if engine is not None:
        engine._prefill = clock.wrap("prefill", engine._prefill)
        if engine.prefix_cache is not None:
            engine.prefix_cache.insert = clock.wrap("cache", engine.prefix_cache.insert)
            engine.prefix_cache.match = clock.wrap("cache", engine.prefix_cache.match)


def measure(strategy: str, problems: int, args, policy, clock: Clock) -> dict:
    cfg, _ = load("countdown", strategy, args.seed, args.override)
    task = build_task(cfg.task)
    use_tokenizer(task, policy.tokenizer)
    cache = getattr(getattr(policy, "engine", None), "prefix_cache", None)
    if cache is not None:
        cache.clear()
    clock.seconds.clear()
    chosen = task.problems("train", limit=problems, seed=args.seed)
    if len(chosen) < problems:
        print(f"{strategy}: the task's train split has {len(chosen)} problems, not {problems} "
              "(raise task.train_size and the ranges with --override, see the module docstring)", flush=True)
    searcher = instantiate(cfg.search, progress=False)
    started = time.perf_counter()
    results = searcher.search(chosen, policy, task, Budget(tokens_per_problem=args.budget))
    wall = time.perf_counter() - started
    return {"strategy": strategy, "problems": len(chosen), "wall": wall, "model": clock.seconds.get("model", 0.0),
            "prefill": clock.seconds.get("prefill", 0.0), "cache": clock.seconds.get("cache", 0.0),
            "tokens": sum(r.tokens for r in results) / len(chosen)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--problems", nargs="+", type=int, default=[16, 64, 256, 1024])
    p.add_argument("--budget", type=int, default=512, help="tokens per problem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--override", nargs="*", default=[], help="Hydra overrides, e.g. policy.engine.prefix_cache_tokens=0")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, _ = load("countdown", args.strategies[0], args.seed, args.override)
    policy, clock = instantiate(cfg.policy), Clock()
    instrument(policy, clock)
    print(f"torch threads {torch.get_num_threads()}; budget {args.budget} tokens/problem; overrides {args.override}")
    header = (f"{'strategy':11} {'problems':>8} {'wall s':>8} {'s/problem':>9} {'x/first':>7} {'model':>6} "
              f"{'prefill':>7} {'cache':>6} {'python':>6} {'tok/problem':>11}")
    rows = []
    for strategy in args.strategies:
        first = None
        for problems in args.problems:
            r = measure(strategy, problems, args, policy, clock)
            per = r["wall"] / r["problems"]
            first = first or per
            rows.append(f"{strategy:11} {r['problems']:8d} {r['wall']:8.1f} {per:9.3f} {per / first:7.2f} "
                        f"{r['model'] / r['wall']:6.0%} {r['prefill'] / r['wall']:7.0%} {r['cache'] / r['wall']:6.0%} "
                        f"{1 - r['model'] / r['wall']:6.0%} {r['tokens']:11.0f}")
            print(rows[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
