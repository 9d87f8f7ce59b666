"""What a strategy returns for one problem."""

from __future__ import annotations

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
    pending expansion of every tree into one `policy.sample` call."""

    name: str

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        ...
