"""Where a run searches and trains: in this process (`cluster=local`) or on Ray workers (`cluster=ray`).

The loop asks a *searcher* for each iteration's results and never learns which one it has;
strategies and policies know nothing of Ray. Trainers run their optimisation step through a
*step runner* (`training.step_runner`): in the driver by default, on Ray Train workers with
`cluster.train_workers > 1`. `training.cluster.rollouts` holds the Ray worker group and
`training.cluster.ddp` the data-parallel step; both need Ray, which only the `ray` extra
installs, so this module imports them only for `cluster=ray`.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from policies import Policy
from search import Budget, SearchResult
from search.config_check import problems
from tasks import Problem, Task
from training.config_check import CLUSTER
from training.step_runner import StepRunner

KINDS = ("local", "ray")


class Searcher(Protocol):
    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget, seed: int) -> list[SearchResult]:
        """Every problem searched once with the run's strategy seeded by `seed`, in problem order."""
        ...

    def stats(self) -> dict[str, Any]:
        """What the last search adds to the train row."""
        ...

    def close(self) -> None: ...


class LocalSearch:
    """Today's single process: `cfg.search` instantiated each iteration and run here."""

    def __init__(self, search_cfg: DictConfig, overrides: dict[str, Any]):
        self.search_cfg, self.overrides = search_cfg, overrides

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget, seed: int) -> list[SearchResult]:
        return instantiate(self.search_cfg, seed=seed, **self.overrides).search(problems, policy, task, budget)

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def build_searcher(cfg: DictConfig, overrides: dict[str, Any]) -> Searcher:
    """The searcher `cfg.cluster` names (`overrides`: objects the driver passes the strategy,
    such as the run's ORM, which cannot travel to Ray workers)."""
    cluster = cfg.get("cluster") or {"kind": "local"}
    if cluster["kind"] not in KINDS:
        raise ValueError(f"cluster.kind must be one of {KINDS}, got {cluster['kind']!r} (conf/cluster)")
    if cluster["kind"] == "local":
        return LocalSearch(cfg.search, overrides)
    if overrides:
        raise ValueError("cluster=ray: the search evaluator uses the run's ORM, which lives in the driver; "
                         "use cluster=local or an evaluator without the ORM")
    bad = problems(cfg, CLUSTER)  # training.run checks these before torch loads; a direct caller here
    if bad:
        raise ValueError("; ".join(bad))
    from training.cluster.rollouts import RayRollouts

    return RayRollouts(cfg)


def build_step_runner(cfg: DictConfig) -> StepRunner | None:
    """The runner of the trainer's step when it is not the trainer's default (in this
    process): Ray Train workers (`training.cluster.ddp.RayTrainDDP`) under `cluster=ray` with
    `cluster.train_workers > 1`, else None. A trainer that takes no `runner` is refused."""
    cluster = cfg.get("cluster") or {"kind": "local"}
    if cluster["kind"] != "ray" or cluster["train_workers"] <= 1:
        return None
    bad = problems(cfg, CLUSTER)
    if bad:
        raise ValueError("; ".join(bad))
    target = cfg.trainer._target_
    params = inspect.signature(get_class(target)).parameters.values()
    if not any(p.name == "runner" or p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(f"cluster.train_workers={cluster['train_workers']}: trainer {target} takes no runner "
                         "(training.step_runner), so it cannot train data-parallel; use cluster.train_workers=1")
    from training.cluster.ddp import RayTrainDDP

    return RayTrainDDP(cluster)
