"""Tree-of-Thoughts breadth-first search (Yao et al., 2023): propose `k` next steps for
every state of the beam, score them with the evaluator, keep the best `beam`, repeat to
the depth limit. All problems' beams grow in the same batched call each level."""

from __future__ import annotations

import numpy as np

from policies import Policy
from search.expand import Expansion, ProblemState
from search.stepwise import StepwiseSearch
from tasks import Task


class TreeOfThoughts(StepwiseSearch):
    name = "tot"

    def __init__(self, k: int = 4, beam: int = 2, select: str = "greedy", **kwargs):
        super().__init__(**kwargs)
        if select not in ("greedy", "sample"):
            raise ValueError(f"search.select must be 'greedy' or 'sample', got {select!r}")
        self.k, self.beam, self.select = k, beam, select

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        for s in states:
            s.scratch["frontier"] = [s.tree.root]
        while live := self.live(states, lambda s: bool(s.scratch["frontier"])):
            requests = [Expansion(s, node, self.k) for s in live for node in s.scratch["frontier"]]
            children = self.grow(requests, policy, task)
            new: dict[int, list[int]] = {}
            for e, kids in zip(requests, children):
                new.setdefault(id(e.state), []).extend(kids)
            items = [(s, c) for s in live for c in new.get(id(s), [])]
            self.score(items, policy, task)
            for s in live:
                s.scratch["frontier"] = [c for c in self.keep(s, new.get(id(s), [])) if not s.tree[c]["terminal"]]

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
