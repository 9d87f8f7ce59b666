"""Declared types and ranges of the config's knobs, checked right after Hydra composes a
config and before any model (or torch) is imported.

A bad value would otherwise reach the model minutes later and fail deep inside torch. Each
entry point checks the composed config against tables of `Knob`s keyed by dotted path
(`search.temperature`, `budget.tokens_per_problem`) and exits with code 2 and one line
per bad key naming the key, the value and the allowed range.

Two sources fill the tables. The parts of the config with no `_target_` (the root's keys,
`budget`, `eval`, `health`, `cluster`) have a schema of dataclasses (`search.schema`,
`training.schema`) that Hydra composes into, so their types are enforced at composition;
their tables are derived from those fields (`knobs`: type, nullability and the range in
each field's metadata), so a range is written once. The groups built from a `_target_`
(search strategies, evaluators, trainers, tasks, policies, the ORM) keep hand-written
tables keyed by path: a dataclass per target would copy each constructor's signature, and
one rule per key name holds for whatever option of the group is selected, so a strategy
written outside the package that uses the same key names (`temperature`, `k`,
`max_depth`, ...) is checked too; keys no table declares are left alone. This module
holds the keys `search.run` reads (run settings and the search group);
`training.config_check` adds the training loop's keys and the trainer, ORM and cluster
groups (search/ never imports training/).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from search import schema

ABSENT = object()


@dataclass(frozen=True)
class Knob:
    """A config value's type (int, float, bool or str) and range, or the strings it may be
    (`choices`); `null` allows None."""

    kind: type = int
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    null: bool = False
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words, e.g. "a number in (0, 1]" or "an integer >= 1 or null"."""
        if self.choices:
            return "one of " + ", ".join(self.choices) + (" or null" if self.null else "")
        text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
        low = (f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None)
        high = (f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None)
        if low and high:
            text += f" in {low}, {high}"
        elif low:
            text += f" {'>=' if self.ge is not None else '>'} {low[1:]}"
        elif high:
            text += f" {'<=' if self.le is not None else '<'} {high[:-1]}"
        return text + (" or null" if self.null else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null
        if self.choices:
            return value in self.choices
        if self.kind in (bool, str):
            return isinstance(value, self.kind)
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def count(least: int = 1, null: bool = False) -> Knob:
    return Knob(int, ge=least, null=null)


def fraction() -> Knob:
    """A probability or weight in [0, 1]."""
    return Knob(float, ge=0, le=1)


def knobs(config: type, prefix: str = "") -> dict[str, Knob]:
    """The `Knob` of every field of the dataclass `config` and of the dataclasses it nests,
    keyed by dotted path: the field's type (`Optional` allows null) and the range in its
    metadata (`search.schema.required`). `Any` fields (open groups) get none."""
    table = {}
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        kind, null = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(kind):
            table.update(knobs(kind, f"{prefix}{f.name}."))
        elif kind in (int, float, bool, str):
            table[prefix + f.name] = Knob(kind, null=null, **f.metadata)
    return table


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """`Optional[X]` (or `X | None`) as (X, True); any other hint as (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


SEED = Knob(int, **schema.SEED)
NON_NEGATIVE = Knob(float, ge=0)
POSITIVE = Knob(float, gt=0)

# Run settings shared by training.run and search.run: search.schema.RunConfig, and the key
# every task accepts (conf/task_contract.yaml; the task group is built from a `_target_`).
RUN: dict[str, Knob] = {**knobs(schema.RunConfig), "task.limit": count(null=True)}

# The search group: one meaning per key name across strategies (conf/search/*.yaml).
SEARCH: dict[str, Knob] = {f"search.{key}": knob for key, knob in {
    "seed": SEED,
    "n": count(null=True),
    "batch": count(),
    "k": count(),
    "beam": count(),
    "max_depth": count(),
    "max_new_tokens": count(),
    "temperature": NON_NEGATIVE,
    "top_p": Knob(float, gt=0, le=1),
    "stop_after": count(null=True),
    "restarts": count(0, null=True),
    "depth_cost": NON_NEGATIVE,
    "threshold": fraction(),
    "n_simulations": count(null=True),
    "c_explore": NON_NEGATIVE,
    "dirichlet_alpha": POSITIVE,
    "dirichlet_eps": fraction(),
    "widening": Knob(float, gt=0, null=True),
    "widening_exponent": Knob(float, gt=0, le=1),
    "population": count(),
    "offspring": count(),
    "crossover_rate": fraction(),
    "rewrite_rate": fraction(),
    "dense_weight": NON_NEGATIVE,
    "novelty_weight": NON_NEGATIVE,
    "novelty_k": count(),
    "max_generations": count(null=True),
    "m": count(),
    "forks": count(),  # entropy_tree
    "branch": count(),
    "rounds": count(0, null=True),
    "simulations": count(),
    "revisions": count(0),
    "reject_below": fraction(),
    "c_puct": NON_NEGATIVE,
    "guide.hidden": count(),
    "guide.layers": count(),
    "guide.problems": count(),
    "guide.rounds": count(),
    "guide.games": count(),
    "guide.simulations": count(),
    "guide.c_puct": NON_NEGATIVE,
    "guide.dirichlet_alpha": POSITIVE,
    "guide.dirichlet_eps": fraction(),
    "guide.sample_moves": count(0),
    "guide.epochs": count(),
    "guide.batch_size": count(),
    "guide.lr": POSITIVE,
    "guide.seed": SEED,
    "guide.cache_dir": Knob(str, null=True),
    "evaluator.n": count(),
    "evaluator.votes": count(),
    "evaluator.max_new_tokens": count(),
    "evaluator.temperature": NON_NEGATIVE,
    "evaluator.neutral": fraction(),
}.items()}


def _value(cfg: DictConfig, path: str) -> Any:
    """The resolved value at `path`, or ABSENT when the composed config has no such key or
    the key is an interpolation (`search.seed: ${seed}` is checked once, at `seed`)."""
    parent, _, key = path.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or key not in node or OmegaConf.is_interpolation(node, key):
        return ABSENT
    return node[key]


def problems(cfg: DictConfig, *tables: Mapping[str, Knob]) -> list[str]:
    """One line per key of `cfg` whose value its table does not allow."""
    lines = []
    for table in tables:
        for path, knob in table.items():
            value = _value(cfg, path)
            if value is not ABSENT and not knob.accepts(value):
                lines.append(f"config error: {path}={value!r} is not allowed; expected {knob.allowed()}")
    return lines


def check_or_exit(cfg: DictConfig, *tables: Mapping[str, Knob]) -> None:
    """Print every violation (one line each) to stderr and exit with code 2, or return."""
    lines = problems(cfg, *tables)
    if lines:
        print("\n".join(lines), file=sys.stderr)
        sys.exit(2)
