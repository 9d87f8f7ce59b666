"""One seed for every random number generator a run touches.

It lives in `training/`, beside the entry points that call it (`training.run` through the
loop, `training.evaluate`, and the Ray rollout workers of `training.cluster`), because
seeding the process-wide generators is what a run does at its start, not something a
layer below needs: policies and searches take explicit seeds (`sample(seed=...)`,
`build_tiny_model(seed=...)`, a strategy's `seed`) and never need the whole process
seeded, so neither `policies/` nor `search/` calls this.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so the same config seed gives the same run on the
    same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, iteration: int, stream: int) -> int:
    """Independent, reproducible seeds per (run, iteration, purpose): the loop's streams are
    0 search, 1 evaluation, 2 train summary, 3 the update-shift probe."""
    return (seed * 1_000_003 + iteration * 1_009 + stream) % 2**31
