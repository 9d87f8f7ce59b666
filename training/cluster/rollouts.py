"""Rollout workers on Ray: each actor holds a policy replica and searches one shard per iteration.

The driver (the training loop) keeps the only trainable copy of the policy. Each iteration
it puts the current weights and the task into the Ray object store once, splits the
training problems into contiguous shards (one per worker, sizes differing by at most one),
and asks every worker to load those weights (which drops its prefix cache, as
`Policy.update_weights` does in-process) and run the configured strategy on its shard.
Shard `i` is seeded from the iteration's search seed and `i` alone, so the same run seed and
worker count give the same traces, and shard 0 of one worker searches exactly what the
single-process loop searches. Trees come back as `SearchTree.to_json` documents.

A worker whose process dies mid-shard is restarted by Ray (`cluster.max_restarts`) and
the driver sends it the same shard again, with the same weights and seed; the shard's
results are taken once, from the call that finished. `stats()` reports how many shards
were sent again.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from policies import Policy
from training.seeding import seed_everything
from search import Budget, SearchResult
from search.tree import SearchTree
from tasks import Problem, Task
from training.cluster.session import ensure_ray, worker_env

SHARD_SEED_STRIDE = 1_000_033
RESTART_TIMEOUT = 300.0  # seconds a restarted worker may take to rebuild its policy


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of `shards` contiguous slices of n items, the first n % shards one longer;
    empty slices (more shards than items) are left out."""
    base, extra = divmod(n, shards)
    bounds, start = [], 0
    for i in range(shards):
        stop = start + base + (i < extra)
        if stop > start:
            bounds.append((start, stop))
        start = stop
    return bounds


def shard_seed(seed: int, shard: int) -> int:
    """The search seed of shard `shard`; shard 0 keeps the iteration's own seed."""
    return (seed + SHARD_SEED_STRIDE * shard) % 2**31


def result_to_wire(r: SearchResult) -> dict[str, Any]:
    """A result as plain data: its tree as JSON, its spend, its pick; the problem by id."""
    return {"problem_id": r.problem.id, "tree": r.tree.to_json(), "tokens": r.tokens, "calls": r.calls,
            "wall_time": r.wall_time, "answer": r.answer, "stop_reason": r.stop_reason}


def result_from_wire(data: dict[str, Any], problem: Problem) -> SearchResult:
    if data["problem_id"] != problem.id:
        raise RuntimeError(f"rollout worker returned problem {data['problem_id']!r} where {problem.id!r} was sent")
    return SearchResult(problem=problem, tree=SearchTree.from_json(data["tree"]), tokens=data["tokens"],
                        calls=data["calls"], wall_time=data["wall_time"], answer=data["answer"],
                        stop_reason=data["stop_reason"])


class RolloutWorker:
    """One policy replica (built from `cfg.policy`) on `cpus` torch threads."""

    def __init__(self, policy_cfg: dict[str, Any], cpus: int, seed: int):
        torch.set_num_threads(cpus)
        seed_everything(seed)
        self.policy: Policy = instantiate(policy_cfg)
        self.shard: int | None = None

    def search(self, weights: dict[str, torch.Tensor], search_cfg: dict[str, Any], seed: int, shard: int,
               problems: list[Problem], task: Task, budget: Budget) -> list[dict[str, Any]]:
        """Load `weights`, then search `problems` with the strategy `search_cfg` seeded for this shard."""
        self.shard = shard
        self.policy.model.load_state_dict(weights)
        self.policy.update_weights()
        seed = shard_seed(seed, shard)
        seed_everything(seed)
        strategy = instantiate(search_cfg, seed=seed)
        results = [result_to_wire(r) for r in strategy.search(problems, self.policy, task, budget)]
        self.shard = None
        return results

    def state(self) -> dict[str, Any]:
        """This worker's process id and the shard it is searching (None between shards)."""
        return {"pid": os.getpid(), "shard": self.shard, "threads": torch.get_num_threads()}


class RayRollouts:
    """The searcher of `cluster=ray`: a group of `RolloutWorker` actors, started on first use."""

    def __init__(self, cfg: DictConfig):
        self.cluster = cfg.cluster
        self.policy_cfg = OmegaConf.to_container(cfg.policy, resolve=True)
        self.search_cfg = {**OmegaConf.to_container(cfg.search, resolve=True), "progress": False}
        self.seed = cfg.seed
        self.workers: list[Any] = []
        self.retried = 0

    def start(self) -> None:
        """Start the actors (named `plateau-rollout-<i>`) and wait until each holds its policy."""
        ensure_ray(self.cluster)
        cpus = self.cluster.cpus_per_worker
        actor = ray.remote(RolloutWorker)
        options = dict(num_cpus=cpus, num_gpus=self.cluster.gpus_per_worker, max_restarts=self.cluster.max_restarts,
                       max_task_retries=0, max_concurrency=2, runtime_env={"env_vars": worker_env(cpus)})
        self.workers = [actor.options(name=f"plateau-rollout-{i}", **options).remote(self.policy_cfg, cpus, self.seed)
                        for i in range(self.cluster.rollout_workers)]
        ray.get([w.state.remote() for w in self.workers])

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget, seed: int) -> list[SearchResult]:
        """Every problem searched once, by the worker of its shard, results in problem order."""
        if not self.workers:
            self.start()
        weights = ray.put({k: v.detach().cpu() for k, v in policy.model.state_dict().items()})
        task_ref = ray.put(task)
        bounds = shard_bounds(len(problems), len(self.workers))

        def send(shard: int) -> Any:
            start, stop = bounds[shard]
            return self.workers[shard].search.remote(weights, self.search_cfg, seed, shard, problems[start:stop],
                                                     task_ref, budget)

        pending = {send(i): i for i in range(len(bounds))}
        done: dict[int, list[dict[str, Any]]] = {}
        tries = [0] * len(bounds)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready[0])
            try:
                done[shard] = ray.get(ready[0])
            except ray.exceptions.RayActorError:  # the worker's process died during the shard
                tries[shard] += 1
                self._await_restart(shard)
                pending[send(shard)] = shard
        self.retried = sum(tries)
        for i, (start, stop) in enumerate(bounds):
            if len(done[i]) != stop - start:
                raise RuntimeError(f"rollout shard {i}: {len(done[i])} results for {stop - start} problems")
        return [result_from_wire(d, problems[start + j])
                for i, (start, _) in enumerate(bounds) for j, d in enumerate(done[i])]

    def _await_restart(self, index: int, timeout: float = RESTART_TIMEOUT) -> None:
        """Block until Ray has restarted worker `index` (its constructor ran again)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ray.get(self.workers[index].state.remote(), timeout=timeout)
                return
            except ray.exceptions.ActorDiedError:  # Ray gave the actor up
                raise RuntimeError(f"rollout worker {index} died and has no restarts left "
                                   f"(cluster.max_restarts={self.cluster.max_restarts})") from None
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout worker {index} did not come back within {timeout:.0f} s") from None
                time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        """The train row's share: how many shards were sent again after a worker died."""
        return {"shards_retried": self.retried, "rollout_workers": len(self.workers)}

    def close(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
