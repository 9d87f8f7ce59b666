"""Where a trainer's optimisation step runs: in this process, or data-parallel on workers.

A trainer hands its runner a *step*, the modules it trains and their optimizer. The step is
`step(modules, optimizer, shard) -> stats`: it trains `modules` (a dict of name to module)
with `optimizer`, and with `shard=(rank, world)` it is one of `world` data-parallel
processes, each holding its own copy of the modules wrapped in DistributedDataParallel,
computing only its share of every batch (`training.sft.batch_loss`, the policy-gradient
`MinibatchUpdate.train_minibatches`, training/pg_update.py) so that DDP's gradient average is the step one
process takes on the whole batch.

`InProcess` (the default of every trainer) calls the step here with `shard=(0, 1)`;
`training.cluster.ddp.RayTrainDDP` (`cluster=ray` with `cluster.train_workers > 1`, built by
`training.cluster.build_step_runner`) runs it on Ray Train workers and loads the weights
and optimizer state rank 0 ended with back into the driver's modules and optimizer. A step
that runs on workers is pickled, so it is a module-level function or a bound method of a
small object, wrapped in `functools.partial` with its data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

Step = Callable[[dict[str, torch.nn.Module], torch.optim.Optimizer, tuple[int, int]], dict[str, float]]


class StepRunner(Protocol):
    workers: int  # data-parallel processes a step runs on

    def run(self, step: Step, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """Run `step` on `modules` and `optimizer`, which hold the trained state afterwards; its stats."""
        ...


class InProcess:
    """The step runs in this process on the modules and optimizer themselves."""

    workers = 1

    def run(self, step: Step, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, float]:
        return step(modules, optimizer, (0, 1))
