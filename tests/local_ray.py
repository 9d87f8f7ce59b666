"""A local Ray for the tests that need one, started the same way everywhere: no dashboard,
no auth, a small object store, workers' output kept out of pytest's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray


@contextmanager
def local_ray(num_cpus: int) -> Iterator[object]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
