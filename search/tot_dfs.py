"""Tree-of-Thoughts depth-first search: expand the most promising state, prune children
whose value falls below `threshold`, and backtrack when a state has no child left. Every
problem's DFS advances one expansion per round, all in one batched call. It stops after
`stop_after` finished traces above the threshold (null: when the budget is spent), or
when the stack is empty ("exhausted")."""

from __future__ import annotations

from policies import Policy
from search.budget import require_budget
from search.expand import Expansion, ProblemState
from search.stepwise import StepwiseSearch, open_work
from tasks import Task


class TreeOfThoughtsDFS(StepwiseSearch):
    name = "tot_dfs"

    def __init__(self, k: int = 4, threshold: float = 0.5, stop_after: int | None = 1, **kwargs):
        super().__init__(**kwargs)
        self.k, self.threshold, self.stop_after = k, threshold, stop_after

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        if self.stop_after is None and states:
            require_budget(states[0].meter.budget, "stop_after")
        for s in states:
            s.scratch.update(stack=[s.tree.root], log_backtracks=0, finished=0)
        while live := self.live(states, lambda s: open_work(s, "stack", self.stop_after)):
            requests = [Expansion(s, s.scratch["stack"].pop(), self.k) for s in live]
            children = self.grow(requests, policy, task)
            self.score([(e.state, c) for e, kids in zip(requests, children) for c in kids], policy, task)
            for e, kids in zip(requests, children):
                self.push(e.state, kids)

    def push(self, state: ProblemState, kids: list[int]) -> None:
        """Keep children at or above the threshold, best on top of the stack; a state
        left with none is a dead end, and the next pop backtracks."""
        tree, scratch = state.tree, state.scratch
        good = [c for c in kids if (tree[c]["value"] or 0.0) >= self.threshold]
        scratch["finished"] += sum(tree[c]["terminal"] for c in good)
        open_kids = [c for c in good if not tree[c]["terminal"]]
        if kids and not open_kids:
            scratch["log_backtracks"] += 1
        scratch["stack"].extend(sorted(open_kids, key=lambda c: (tree[c]["value"], tree[c]["prior"] or 0.0, -c)))
