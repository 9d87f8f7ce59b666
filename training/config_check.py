"""The training loop's own knobs, the trainer and ORM groups and the cluster options,
declared like `search.config_check`'s tables and checked by `training.run` before anything
heavy loads.

The loop's keys and the cluster's come from their schema (`training.schema`). The trainer
and ORM groups are built from a `_target_`, so their rules are keyed by dotted path (see
`search.config_check` for why): they hold for every trainer that uses the key (EI and RCRL
share `sft.*`, PPO and GRPO share the policy-gradient keys) and for trainers written
outside the package; keys no table declares are left alone.
"""

from __future__ import annotations

from omegaconf import DictConfig

from search.config_check import (NON_NEGATIVE, POSITIVE, RUN, SEARCH, SEED, Knob, check_or_exit, count, fraction,
                                  knobs)
from training.schema import AUTOCAST, OLD_LOGP, PlateauConfig, RayCluster

# The root keys and eval.lab that training.run reads beyond search.run's RUN.
LOOP: dict[str, Knob] = {path: knob for path, knob in knobs(PlateauConfig).items() if path not in RUN}

_SFT = {  # training.sft.SFTConfig, training.orm.ORMConfig
    "epochs": count(),
    "batch_size": count(),
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE,  # 0 = off
    "max_length": count(),
    "group_by_length": Knob(bool),
    "autocast": Knob(str, null=True, choices=AUTOCAST),
}

TRAINER: dict[str, Knob] = {f"trainer.{key}": knob for key, knob in {
    "seed": SEED,
    **{f"sft.{k}": v for k, v in _SFT.items()},
    "good_threshold": Knob(float, null=True),
    "bad_per_good": Knob(float, ge=0, null=True),
    "lr": POSITIVE,
    "critic_lr": Knob(float, gt=0, null=True),
    "weight_decay": NON_NEGATIVE,
    "epochs": count(),
    "minibatch_size": count(),
    "grad_clip": Knob(float, ge=0, null=True),  # null or 0 = off
    "clip_low": Knob(float, ge=0, lt=1),
    "clip_high": Knob(float, ge=0, null=True),
    "kl_coef": NON_NEGATIVE,
    "entropy_coef": NON_NEGATIVE,
    "vf_coef": NON_NEGATIVE,
    "value_clip": Knob(float, gt=0, null=True),
    "gamma": fraction(),
    "lam": fraction(),
    "pass_k": count(),
    "cov_fraction": Knob(float, gt=0, le=1, null=True),
    "top_entropy_quantile": Knob(float, gt=0, le=1),
    "negative_weight": NON_NEGATIVE,
    "reset_reference_every": count(null=True),
    "micro_batch_size": count(null=True),
    "old_logp": Knob(str, choices=OLD_LOGP),
    "target_kl": Knob(float, gt=0, null=True),
}.items()}

ORM: dict[str, Knob] = {f"orm.{key}": knob for key, knob in {
    "seed": SEED,
    **{f"train.{k}": v for k, v in _SFT.items()},
    "train.threshold": Knob(float),
}.items()}

CLUSTER: dict[str, Knob] = knobs(RayCluster, "cluster.")  # conf/cluster/ray.yaml (training.cluster)

TABLES = (RUN, LOOP, SEARCH, TRAINER, ORM, CLUSTER)


def check_training_config(cfg: DictConfig) -> None:
    """Exit with code 2 and one line per bad key, or return when every declared knob is valid."""
    check_or_exit(cfg, *TABLES)
