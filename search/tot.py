"""Tree-of-Thoughts breadth-first search (Yao et al., 2023): propose `k` next steps for
every state of the beam, score them with the evaluator, keep the best `beam`, repeat to
the depth limit. All problems' beams grow in the same batched call each level.
`restarts` more searches start from the root when one reaches the depth limit (new
samples: each round has its own seed); `restarts: null` restarts until the budget is
spent, which is how ToT spends a budget larger than one search needs."""

from __future__ import annotations

import numpy as np

from policies import Policy
from search.budget import require_budget
from search.expand import Expansion, ProblemState
from search.stepwise import StepwiseSearch
from tasks import Task


class TreeOfThoughts(StepwiseSearch):
    name = "tot"

    def __init__(self, k: int = 4, beam: int = 2, select: str = "greedy", restarts: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        if select not in ("greedy", "sample"):
            raise ValueError(f"search.select must be 'greedy' or 'sample', got {select!r}")
        if restarts is not None and restarts < 0:
            raise ValueError(f"search.restarts must be >= 0 or null, got {restarts}")
        self.k, self.beam, self.select, self.restarts = k, beam, select, restarts

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        if self.restarts is None and states:
            require_budget(states[0].meter.budget, "restarts")
        for s in states:
            s.scratch.update(frontier=[s.tree.root], log_restarts=0)
        while live := self.live(states, self.has_work):
            requests = [Expansion(s, node, self.k) for s in live for node in s.scratch["frontier"]]
            children = self.grow(requests, policy, task)
            new: dict[int, list[int]] = {}
            for e, kids in zip(requests, children):
                new.setdefault(id(e.state), []).extend(kids)
            items = [(s, c) for s in live for c in new.get(id(s), [])]
            self.score(items, policy, task)
            for s in live:
                s.scratch["frontier"] = [c for c in self.keep(s, new.get(id(s), [])) if not s.tree[c]["terminal"]]

    def has_work(self, state: ProblemState) -> bool:
        """A beam to grow; at the depth limit, a fresh search from the root while restarts
        remain (`restarts: null`: until the budget is spent)."""
        if not state.scratch["frontier"] and (self.restarts is None or state.scratch["log_restarts"] < self.restarts):
            state.scratch["frontier"] = [state.tree.root]
            state.scratch["log_restarts"] += 1
        return bool(state.scratch["frontier"])

    def keep(self, state: ProblemState, candidates: list[int]) -> list[int]:
        """The `beam` best distinct states (duplicate step prefixes collapse to one)."""
        tree, seen, unique = state.tree, set(), []
        for c in candidates:
            key = " ".join(tree.prefix(c).split())
            if key not in seen:
                seen.add(key)
                unique.append(c)
        values = np.array([tree[c]["value"] or 0.0 for c in unique])
        if self.select == "greedy" or len(unique) <= self.beam:
            order = sorted(range(len(unique)), key=lambda i: (-values[i], unique[i]))
            return [unique[i] for i in order[: self.beam]]
        p = values + 1e-6
        picked = self.rng.choice(len(unique), size=self.beam, replace=False, p=p / p.sum())
        return [unique[i] for i in sorted(picked)]
