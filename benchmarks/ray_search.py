"""Search throughput of one process with 2 torch threads against 2 Ray rollout workers with 1 thread each.

    python benchmarks/ray_search.py --problems 16
    python benchmarks/ray_search.py --problems 64 --repeats 3 --override search=tot

The cell is the default study cell of conf/config.yaml (countdown, the tiny 1m base, best-of-8
sampling) unless `--override` changes it. Both sides search the same training problems with
the same strategy; each side is warmed up once (on the Ray side that also starts the workers,
whose start-up is printed apart), then timed `--repeats` times, interleaved, best counts.
Throughput is generated tokens per second of wall time; the ratio is Ray / in-process. One
process on 1 thread is timed too, as the reference that separates what the second core
brings from what a 2-thread pool loses when its cores are shared.
The machine's load average is printed with it: on shared cores the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from training.schema import store_schema

CONF = Path(__file__).resolve().parents[1] / "conf"
store_schema()  # conf/config.yaml names the schema (training/schema.py): registered before composing


def timed(search, problems) -> tuple[float, int]:
    started = time.perf_counter()
    results = search(problems)
    return time.perf_counter() - started, sum(r.tokens for r in results)


def main(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    from search.budget import Budget
    from tasks.config import build_task, use_tokenizer
    from training.cluster.rollouts import RayRollouts

    overrides = ["cluster=ray", "cluster.rollout_workers=2", "cluster.cpus_per_worker=1", "progress=false",
                 "cluster.object_store_mb=128", *args.override]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.set_num_threads(args.threads)
    task = build_task(cfg.task)
    policy = instantiate(cfg.policy)
    use_tokenizer(task, policy.tokenizer)
    budget = Budget(**cfg.budget)
    problems = task.problems("train", limit=args.problems, seed=cfg.seed)
    search_here = lambda ps: instantiate(cfg.search, seed=cfg.seed).search(ps, policy, task, budget)  # noqa: E731
    rollouts = RayRollouts(cfg)
    remote = lambda ps: rollouts.search(ps, policy, task, budget, cfg.seed)  # noqa: E731
    started = time.perf_counter()
    rollouts.start()
    startup = time.perf_counter() - started
    for search in (search_here, remote):  # warm-up: first calls pay for allocation and stop tables
        search(problems[:2])
    sides = [(f"1 process x {args.threads} threads", search_here, args.threads), ("2 Ray workers x 1 thread", remote, 1),
             ("1 process x 1 thread (reference)", search_here, 1)]
    best = {name: 0.0 for name, _, _ in sides}
    for _ in range(args.repeats):
        for name, search, threads in sides:
            torch.set_num_threads(threads)  # the Ray side: the idle driver's pool; each worker has its own
            seconds, tokens = timed(search, problems)
            best[name] = max(best[name], tokens / seconds)
            print(f"{name}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tok/s", flush=True)
    rollouts.close()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    print(f"cell: task={cfg.task._target_.rsplit('.', 1)[-1]} policy size={cfg.policy.get('size', '?')} "
          f"search={cfg.search._target_.rsplit('.', 1)[-1]} problems={len(problems)}; Ray workers started in {startup:.1f} s")
    here, ray_side = best[sides[0][0]], best[sides[1][0]]
    print(f"{sides[0][0]}: {here:.0f} tok/s | {sides[1][0]}: {ray_side:.0f} tok/s | ratio {ray_side / here:.2f} "
          f"| 1 process x 1 thread: {best[sides[2][0]]:.0f} tok/s (load average {' '.join(load)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=16, help="training problems searched per timed call")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per side, interleaved; the best counts")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the in-process side")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the cell, e.g. search=tot")
    main(parser.parse_args())
