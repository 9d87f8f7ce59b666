"""A*-style best-first search over partial traces: a per-problem heap ordered by the
evaluator's value minus `depth_cost` per step; each round pops the top `beam` open nodes
of every problem and expands them all in one batched call. It stops after `stop_after`
finished traces (null: when the budget is spent), or when no open node is left
("exhausted")."""

from __future__ import annotations

import heapq

from policies import Policy
from search.budget import require_budget
from search.expand import Expansion, ProblemState
from search.stepwise import StepwiseSearch, open_work
from tasks import Task


class BestFirst(StepwiseSearch):
    name = "best_first"

    def __init__(self, k: int = 4, beam: int = 1, depth_cost: float = 0.0, stop_after: int | None = 1, **kwargs):
        super().__init__(**kwargs)
        self.k, self.beam, self.depth_cost, self.stop_after = k, beam, depth_cost, stop_after

    def priority(self, state: ProblemState, node: int) -> float:
        d = state.tree[node]
        return (d["value"] or 0.0) - self.depth_cost * d["depth"]

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        if self.stop_after is None and states:
            require_budget(states[0].meter.budget, "stop_after")
        for s in states:
            s.scratch.update(heap=[(-0.0, s.tree.root)], log_pops=[], finished=0)
        while live := self.live(states, lambda s: open_work(s, "heap", self.stop_after)):
            requests = []
            for s in live:
                for _ in range(min(self.beam, len(s.scratch["heap"]))):
                    neg, node = heapq.heappop(s.scratch["heap"])
                    s.scratch["log_pops"].append([node, -neg])
                    requests.append(Expansion(s, node, self.k))
            children = self.grow(requests, policy, task)
            for e, kids in zip(requests, children):  # the budget's tail paid for fewer nodes: keep the rest open
                if not kids and not e.state.done:
                    heapq.heappush(e.state.scratch["heap"], (-self.priority(e.state, e.node), e.node))
            items = [(e.state, c) for e, kids in zip(requests, children) for c in kids]
            self.score(items, policy, task)
            for state, c in items:
                if state.tree[c]["terminal"]:
                    state.scratch["finished"] += 1
                else:
                    heapq.heappush(state.scratch["heap"], (-self.priority(state, c), c))
