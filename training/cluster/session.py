"""Joining Ray: an existing cluster at `cluster.address`, or a local Ray started in this process.

A local Ray declares as many logical CPUs as the run's workers reserve, rollout and training
workers together, even on a machine with fewer cores: the two groups never compute at the
same time (the driver searches, then trains), and each worker's torch uses only the threads
of its own reservation, so the physical cores are not oversubscribed. Token authentication
(on by default since Ray 2.60) is turned off for a local Ray only, which no other machine can
reach; an existing cluster keeps whatever its operator set.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig


def ensure_ray(cluster: DictConfig) -> Any:
    """The `ray` module, connected: a no-op when this process already joined a Ray."""
    import ray

    if ray.is_initialized():
        return ray
    if cluster.address is not None:
        ray.init(address=cluster.address)
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    train = cluster.train_workers if cluster.train_workers > 1 else 0
    ray.init(num_cpus=(cluster.rollout_workers + train) * cluster.cpus_per_worker, include_dashboard=False,
             object_store_memory=int(cluster.object_store_mb) * 2**20)
    return ray


def worker_env(cpus: int) -> dict[str, str]:
    """The environment of a worker that owns `cpus` cores: its OpenMP/MKL pools that wide."""
    return {"OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
