"""The training loop's own knobs and the trainer (and ORM) groups, declared like
`search.config_check`'s tables and checked by `training.run` before anything heavy loads.

Rules are keyed by dotted path, so they hold for every trainer that uses the key (EI and
RCRL share `sft.*`, PPO and GRPO share the policy-gradient keys) and for trainers written
outside the package; keys no table declares are left alone.
"""

from __future__ import annotations

from omegaconf import DictConfig

from search.config_check import NON_NEGATIVE, POSITIVE, RUN, SEARCH, SEED, Knob, check_or_exit, count, fraction

LOOP: dict[str, Knob] = {
    "iterations": count(0),
    "train_problems": count(),
    "eval.rerank": Knob(str, null=True),  # training.orm names the choices
    "eval.cache_base": Knob(bool),
    "eval.lab.samples": count(),
    "eval.lab.max_new_tokens": count(),
    "eval.lab.entropy_samples": count(0),
    "eval.lab.every": count(null=True),
    "health.nodes": count(0),
    "health.rollouts": count(),
    "health.max_new_tokens": count(),
}

_SFT = {  # training.sft.SFTConfig, training.orm.ORMConfig
    "epochs": count(),
    "batch_size": count(),
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE,  # 0 = off
    "max_length": count(),
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
    "reset_reference_every": count(null=True),
    "micro_batch_size": count(null=True),
}.items()}

ORM: dict[str, Knob] = {f"orm.{key}": knob for key, knob in {
    "seed": SEED,
    **{f"train.{k}": v for k, v in _SFT.items()},
    "train.threshold": Knob(float),
}.items()}

CLUSTER: dict[str, Knob] = {  # conf/cluster/ray.yaml (training.cluster)
    "cluster.rollout_workers": count(),
    "cluster.train_workers": count(),
    "cluster.cpus_per_worker": count(),
    "cluster.gpus_per_worker": NON_NEGATIVE,
    "cluster.max_restarts": count(0),
    "cluster.object_store_mb": count(75),  # Ray's smallest object store
}

TABLES = (RUN, LOOP, SEARCH, TRAINER, ORM, CLUSTER)


def check_training_config(cfg: DictConfig) -> None:
    """Exit with code 2 and one line per bad key, or return when every declared knob is valid."""
    check_or_exit(cfg, *TABLES)
