"""The schema of `conf/config.yaml`: `search.schema.RunConfig` plus the training loop's keys,
`eval.lab`, and the `cluster` options, registered with Hydra's ConfigStore.

`conf/config.yaml` lists `plateau_schema` first in its defaults and `conf/cluster/*.yaml`
list `local_schema` / `ray_schema` (Hydra 1.3's schema pattern), so composition types every
key of these parts: a wrong type or a key the schema does not declare fails there, naming
the key. The groups built from a `_target_` (task, policy, search, trainer, orm, logger)
stay open here (`Any`); `training.config_check` explains why and checks their knobs by path.

Hydra finds these nodes only once `store_schema()` has run: every entry point
(`training.run`, `training.evaluate`, hence `search.run`) calls it at import, and so must
any program that composes `conf/` itself (`tests/composing.py`, the benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from search.schema import EvalConfig, RunConfig, optional, required

# Allowed values of string knobs that the trainers check when built and `training.config_check`
# checks before torch loads: written once here, where both can read them.
OLD_LOGP = ("recompute", "sampler")  # trainer.old_logp (training.pg)
AUTOCAST = ("bfloat16",)  # sft.autocast, orm.train.autocast (training.sft.SFTConfig), or null


@dataclass
class LabConfig:
    """training.lab_eval's instruments (`+experiment=plateau_lab`, conf/testbed)."""

    samples: int = required(ge=1)
    max_new_tokens: int = required(ge=1)
    entropy_samples: int = required(ge=0)
    every: Optional[int] = optional(ge=1)  # null: every iteration
    support: Any = None  # the testbed's support rule (tasks.support), usually `${support}`


@dataclass
class TrainEvalConfig(EvalConfig):
    """The loop's evaluation adds reranking, the base-row cache and the laboratory."""

    lab: Optional[LabConfig] = None
    rerank: Optional[str] = required()  # training.orm names the choices
    cache_base: bool = required()


@dataclass
class LocalCluster:
    """conf/cluster/local.yaml: search and train in this process."""

    kind: str = required()


@dataclass
class RayCluster(LocalCluster):
    """conf/cluster/ray.yaml (training.cluster, docs/cluster.md)."""

    address: Optional[str] = required()
    rollout_workers: int = required(ge=1)
    train_workers: int = required(ge=1)
    cpus_per_worker: int = required(ge=1)
    gpus_per_worker: float = required(ge=0)
    max_restarts: int = required(ge=0)
    object_store_mb: int = required(ge=75)  # Ray's smallest object store


@dataclass
class PlateauConfig(RunConfig):
    """The whole composed config: run settings, the loop's keys, and the `_target_` groups."""

    iterations: int = required(ge=0)
    train_problems: int = required(ge=1)
    resume: bool = required()
    update_shift_traces: int = required(ge=0)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    cluster: Any = MISSING  # typed by its option's schema (LocalCluster, RayCluster)
    task: Any = MISSING
    policy: Any = MISSING
    search: Any = MISSING
    trainer: Any = MISSING
    orm: Any = MISSING
    logger: Any = MISSING
    support: Any = None  # a testbed's held-out pattern (conf/testbed: `support.exclude_ops`), read as ${support}


def store_schema() -> None:
    """Register the schema nodes under the names the YAML's defaults lists use."""
    store = ConfigStore.instance()
    store.store(name="plateau_schema", node=PlateauConfig)
    store.store(group="cluster", name="local_schema", node=LocalCluster)
    store.store(group="cluster", name="ray_schema", node=RayCluster)
