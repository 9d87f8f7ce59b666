"""Data-parallel SFT over `cluster.train_workers` processes: Ray Train's `TorchTrainer`
sets up `torch.distributed` (gloo on CPU, NCCL on GPU) and each worker wraps its copy of
the model in `DistributedDataParallel`.

Every worker walks the same global batches as single-process `training.sft.sft` (same
seed, same order) and computes only its slice of each (`training.sft.batch_loss`); DDP
averages the gradients, so every worker takes the step one process would have taken on the
whole batch, to float tolerance. Rank 0 hands the trained weights (and the optimizer's
state, for trainers that keep it) back through a Ray Train checkpoint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from training.cluster.session import ensure_ray
from training.sft import SFTConfig, sft

STATE_FILE = "sft_state.pt"


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP over its copy of the model, then report (rank 0: the weights)."""
    import ray.train
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    model = config["model"]
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=config["sft"].lr, weight_decay=config["sft"].weight_decay)
    if config["optimizer_state"] is not None:
        optimizer.load_state_dict(config["optimizer_state"])
    stats = sft(ddp, config["tokenizer"], config["examples"], config["sft"], seed=config["seed"], optimizer=optimizer,
                shard=(rank, world))
    if rank != 0:
        ray.train.report(stats)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, Path(folder) / STATE_FILE)
        ray.train.report(stats, checkpoint=ray.train.Checkpoint.from_directory(folder))


def sft_data_parallel(model: torch.nn.Module, tokenizer: Any, examples: Sequence[tuple[str, str]], config: SFTConfig,
                      cluster: DictConfig, seed: int = 0,
                      optimizer_state: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """`sft` on `cluster.train_workers` Ray Train workers: trains `model` in place (the
    weights rank 0 ended with are loaded into it) and returns sft's stats and the AdamW
    state the workers ended with (start one from `optimizer_state`; None: a fresh one)."""
    ensure_ray(cluster)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cpus = cluster.cpus_per_worker
    scaling = ScalingConfig(num_workers=cluster.train_workers, use_gpu=cluster.gpus_per_worker > 0,
                            resources_per_worker={"CPU": cpus, **({"GPU": cluster.gpus_per_worker}
                                                                   if cluster.gpus_per_worker > 0 else {})})
    loop_config = {"model": model, "tokenizer": tokenizer, "examples": list(examples), "sft": config, "seed": seed,
                   "optimizer_state": optimizer_state, "threads": cpus}
    with tempfile.TemporaryDirectory() as storage:
        trainer = TorchTrainer(_train_worker, train_loop_config=loop_config, scaling_config=scaling,
                               run_config=RunConfig(storage_path=storage, name="sft"))
        result = trainer.fit()
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
    model.load_state_dict(state["model"])
    return dict(result.metrics or {}), state["optimizer"]
