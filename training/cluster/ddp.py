"""A trainer's step data-parallel over `cluster.train_workers` processes: Ray Train's
`TorchTrainer` sets up `torch.distributed` and each worker wraps its copy of every trained
module in `DistributedDataParallel`. The workers train on the CPU with gloo, as the trainers
do in one process (their batches are built on the CPU); they reserve
`cluster.cpus_per_worker` cores each and no GPU.

Every worker runs the same step (`training.step_runner`) on the same data with the same
seed, so it walks the same batches as one process, and computes only its slice of each;
the step weights its slice's loss by the slice's share of the batch's normaliser, so DDP's
gradient average is the whole batch's gradient and every worker takes the step one process
would have taken, to float tolerance. Rank 0 hands the trained weights and the optimizer's
state back through a Ray Train checkpoint; the driver loads them into its own modules and
optimizer, so a trainer keeps its optimizer across iterations exactly as in one process.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from training.cluster.session import ensure_ray
from training.step_runner import Step

STATE_FILE = "step_state.pt"
CAPTURING_HOOKS = "transformers.utils.output_capturing"  # where transformers' hidden-state hooks are defined


def shippable(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` that pickles. The first forward that asks a transformers model for
    its hidden states installs output-capturing hooks on its layers, closures over a
    ContextVar that cannot be pickled; the copy drops those hooks and the model's mark of
    having them, so the worker's copy installs its own when it first asks
    (`register_model_classes`)."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        for key in [k for k, hook in m._forward_hooks.items() if getattr(hook, "__module__", "") == CAPTURING_HOOKS]:
            del m._forward_hooks[key]
        if getattr(m, "_output_capturing_hooks_installed", False):
            m._output_capturing_hooks_installed = False
    return clone


def register_model_classes(modules: dict[str, torch.nn.Module]) -> None:
    """transformers learns which outputs (hidden states, attentions) a model class can record
    when a model of that class is built, once per process; an unpickled model was never built
    in the worker, so it would answer `output_hidden_states` with None. Building one of each
    class on the meta device (no memory, no weights) registers them. Call it before the
    unpickled models' first forward."""
    from transformers import PreTrainedModel

    built: set[type] = set()
    for m in (sub for module in modules.values() for sub in module.modules()):
        if isinstance(m, PreTrainedModel) and type(m) not in built:
            with torch.device("meta"):
                type(m)(m.config)
            built.add(type(m))


def optimizer_layout(optimizer: torch.optim.Optimizer, modules: dict[str, torch.nn.Module]) -> list[list[tuple[str, str]]]:
    """Each param group's parameters as (module key, parameter name), so a worker can build
    the same optimizer over its own copies of the modules."""
    names = {id(p): (key, name) for key, m in modules.items() for name, p in m.named_parameters()}
    missing = [i for g in optimizer.param_groups for i, p in enumerate(g["params"]) if id(p) not in names]
    if missing:
        raise ValueError(f"data-parallel step: the optimizer steps {len(missing)} parameters outside the modules "
                         f"{sorted(modules)} it was given")
    return [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def rebuild_optimizer(kind: type[torch.optim.Optimizer], layout: list[list[tuple[str, str]]], state: dict[str, Any],
                      modules: dict[str, torch.nn.Module]) -> torch.optim.Optimizer:
    """The driver's optimizer over `modules`: same groups, hyperparameters and moments."""
    params = {key: dict(m.named_parameters()) for key, m in modules.items()}
    optimizer = kind([{"params": [params[key][name] for key, name in group]} for group in layout])
    optimizer.load_state_dict(state)  # also sets each group's lr, weight decay, ... from the driver's
    return optimizer


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP over its copies of the modules, the step, then report
    (rank 0: its stats, the weights, the optimizer state and each module's train/eval mode)."""
    import ray.train
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    modules: dict[str, torch.nn.Module] = config["modules"]
    register_model_classes(modules)
    optimizer = rebuild_optimizer(config["optimizer_kind"], config["layout"], config["optimizer_state"], modules)
    # find_unused_parameters: a step may use only part of a module (a separate critic's LM head,
    # a critic that this iteration does not train); those parameters keep no gradient, as in one process
    ddp = {key: DistributedDataParallel(m, find_unused_parameters=True) for key, m in modules.items()}
    stats = config["step"](ddp, optimizer, (rank, world))
    if rank != 0:
        ray.train.report({})
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"stats": stats, "modules": {key: m.state_dict() for key, m in modules.items()},
                    "training": {key: m.training for key, m in modules.items()},
                    "optimizer": optimizer.state_dict()}, Path(folder) / STATE_FILE)
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(folder))


class RayTrainDDP:
    """A step runner (`training.step_runner.StepRunner`) over `cluster.train_workers` Ray Train
    workers of `cluster.cpus_per_worker` cores each."""

    def __init__(self, cluster: DictConfig):
        self.cluster = cluster
        self.workers = int(cluster.train_workers)

    def run(self, step: Step, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """`step` on every worker; `modules` and `optimizer` then hold what rank 0 ended with.
        Its stats (rank 0's, which the step makes the world's) gain `train_workers`."""
        ensure_ray(self.cluster)
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        cpus = self.cluster.cpus_per_worker
        scaling = ScalingConfig(num_workers=self.workers, use_gpu=False, resources_per_worker={"CPU": cpus})
        loop_config = {"step": step, "modules": {key: shippable(m) for key, m in modules.items()},
                       "optimizer_kind": type(optimizer), "layout": optimizer_layout(optimizer, modules),
                       "optimizer_state": optimizer.state_dict(), "threads": cpus}
        with tempfile.TemporaryDirectory() as storage:
            trainer = TorchTrainer(_train_worker, train_loop_config=loop_config, scaling_config=scaling,
                                   run_config=RunConfig(storage_path=storage, name="train_step"))
            result = trainer.fit()
            with result.checkpoint.as_directory() as folder:
                state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
        for key, m in modules.items():
            m.load_state_dict(state["modules"][key])
            m.train(state["training"][key])
        optimizer.load_state_dict(state["optimizer"])
        return {**state["stats"], "train_workers": self.workers}
