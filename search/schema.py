"""The schema of the run settings every entry point reads (`seed`, `threads`, `budget`,
`eval`, `health`, ...): dataclasses that Hydra composes `conf/config.yaml` into.

Structured configs give each key a type at composition, so `seed=abc`, a typo'd key in an
experiment YAML or `eval.k: 2.5` fails there, naming the key, instead of minutes later
inside torch. Each field also carries its range (`ge`, `gt`, `le`, `lt` in its metadata);
`search.config_check` derives its checks from these fields, so a range is written once.

The schema holds types and ranges, not values: a key `conf/config.yaml` sets is
`required(...)` (MISSING here; the YAML, with its comments, holds the one default), and a
key the YAML may leave out is `optional(...)`, whose None is what the code reads for "absent".
`training.schema` extends `RunConfig` with the training loop's keys and registers the whole
with Hydra's ConfigStore (search/ never imports training/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

BOUNDS = ("ge", "gt", "le", "lt")


def required(**bounds: float) -> Any:
    """A field the YAML must set, with its range (`ge`, `gt`, `le`, `lt`)."""
    return field(default=MISSING, metadata=_checked(bounds))


def optional(**bounds: float) -> Any:
    """A field the YAML may leave out (None), with its range when set."""
    return field(default=None, metadata=_checked(bounds))


def _checked(bounds: dict[str, float]) -> dict[str, float]:
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"unknown bound(s) {sorted(unknown)}; a field's range is given by {BOUNDS}")
    return bounds


SEED = {"ge": 0, "lt": 2**32}  # NumPy's seed range


@dataclass
class BudgetConfig:
    """search.budget.Budget: per problem and per search call; null = unlimited."""

    tokens_per_problem: Optional[int] = required(ge=1)
    calls_per_problem: Optional[int] = required(ge=1)


@dataclass
class EvalConfig:
    """What the entry points evaluate (search.policy_eval)."""

    split: str = required()
    problems: int = required(ge=1)
    k: int = required(ge=1)
    temperature: float = required(ge=0)
    max_new_tokens: int = required(ge=1)


@dataclass
class HealthConfig:
    """search.health.value_auc's fresh rollouts."""

    nodes: int = required(ge=0)
    rollouts: int = required(ge=1)
    max_new_tokens: int = required(ge=1)


@dataclass
class RunConfig:
    """The root keys and run-setting groups that `training.evaluate` (`search.run`) reads."""

    seed: int = required(**SEED)
    threads: Optional[int] = required(ge=1)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    save_trees: int = required(ge=0)
    progress: bool = required()
