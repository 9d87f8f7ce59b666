"""What a strategy returns for one problem."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol

from policies import Policy
from search.budget import Budget
from search.tree import SearchTree, Trace
from tasks import Problem, Task


@dataclass
class SearchResult:
    """One problem's search: the tree, what it cost, and the strategy's own pick.

    `answer` is the answer the strategy itself would submit (majority vote for sampling,
    most-visited path for MCTS, ...); metrics over all traces (pass@k, maj@k) come from
    `traces()`. `stop_reason` says what ended the search: the budget, an exhausted tree,
    or the strategy's own size limit.
    """

    problem: Problem
    tree: SearchTree
    tokens: int
    calls: int
    wall_time: float
    answer: str | None = None
    stop_reason: str = "size"  # budget | exhausted | size (search.expand.STOP_REASONS)

    def traces(self) -> list[Trace]:
        return self.tree.traces()


class Strategy(Protocol):
    """A search algorithm. It searches ALL problems in lockstep: each round gathers every
    pending expansion of every tree into one `policy.sample` call.

    Built by Hydra from its YAML plus `seed=` (the training loop seeds every iteration's
    strategy afresh), so its constructor must take `seed` (`require_seed` checks this
    before any model loads)."""

    name: str

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        ...


def require_seed(target: str) -> None:
    """Refuse, in one line, a strategy class (`search._target_`) whose constructor cannot
    take `seed=`: the loop would otherwise fail only after the iteration-0 evaluation."""
    from hydra.utils import get_class

    params = inspect.signature(get_class(target)).parameters.values()
    if not any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(f"search._target_={target}: its constructor must accept seed= (the loop seeds each "
                         "iteration's strategy); add `seed: int = 0` to its __init__")
