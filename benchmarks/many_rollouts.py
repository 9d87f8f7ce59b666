"""BroRL-size GRPO: hundreds of rollouts per problem on the tiny base, in bounded memory (a
script, not a test: it prints what one run measured and asserts nothing).

    python -m benchmarks.many_rollouts                       # n = 64 and 256 on 4 problems
    python -m benchmarks.many_rollouts --n 256 --micro 16 64 --problems 2

For each n and each `trainer.micro_batch_size` (0 = none: the whole minibatch of n traces
in one forward) a fresh process samples n traces of each problem (one batched call per
problem group), then runs one GRPO update with minibatch = n traces. Columns: search and
update wall seconds, update ms per trace (flat in n when no per-trace overhead grows
with n), and the process's peak resident memory after the search and after the update
(the update's extra over the search is what micro batches bound).

Measured 2026-12-01 (2 problems, 1 thread, 2 shared cores; `--n 64 256 --problems 2`):

        n micro traces search s update s ms/trace RSS search RSS update
       64     -    128      1.2      3.9     30.1       608M      1081M
       64    32    128      1.3      3.9     30.4       609M       909M
      256     -    512      3.5     15.9     31.1       723M      2408M
      256    32    512      3.3      9.0     17.7       724M       877M
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, micro: int, problems: int) -> dict[str, float]:
    from search import Budget
    from search.sampling import Sampling
    from tasks.countdown import Countdown
    from training.base_model import tiny_base
    from training.grpo import GRPO

    task_cfg = {"min_numbers": 3, "max_numbers": 3, "number_range": [1, 5], "target_range": [2, 12],
                "train_size": 100, "test_size": 20, "reference_count": 4}
    task = Countdown(**task_cfg)
    policy = tiny_base({"_target_": "tasks.countdown.Countdown", **task_cfg}, size="1m", init="sft", sft_problems=100,
                       traces_per_problem=4, sft={"epochs": 50, "batch_size": 16, "lr": 1e-3}, seed=0, progress=False)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (MiB on Linux)
    start = time.perf_counter()
    results = Sampling(n=n, batch=n, max_new_tokens=48, seed=0).search(
        task.problems("train", limit=problems, seed=0), policy, task, Budget())
    searched, rss_search = time.perf_counter(), rss()
    trainer = GRPO(lr=1e-4, minibatch_size=n, micro_batch_size=micro or None, kl_coef=0.01, seed=0)
    trainer.setup(policy, task)
    stats = trainer.step(1, results)
    done = time.perf_counter()
    traces = stats["pg_rollouts"]
    return {"n": n, "micro": micro, "traces": traces, "search_s": searched - start, "update_s": done - searched,
            "update_ms_per_trace": 1000 * (done - searched) / traces, "rss_search_mib": rss_search,
            "rss_update_mib": rss()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--micro", type=int, nargs="+", default=[0, 32])
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)  # internal: n micro in a fresh process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.problems)))
        return
    print(f"{'n':>5} {'micro':>5} {'traces':>6} {'search s':>8} {'update s':>8} {'ms/trace':>8} "
          f"{'RSS search':>10} {'RSS update':>10}")
    for n in args.n:
        for micro in args.micro:
            out = subprocess.run([sys.executable, "-m", "benchmarks.many_rollouts", "--one", str(n), str(micro),
                                  "--problems", str(args.problems)], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{n:>5} {micro or '-':>5} {row['traces']:>6} {row['search_s']:>8.1f} {row['update_s']:>8.1f} "
                  f"{row['update_ms_per_trace']:>8.1f} {row['rss_search_mib']:>9.0f}M {row['rss_update_mib']:>9.0f}M")


if __name__ == "__main__":
    main()
