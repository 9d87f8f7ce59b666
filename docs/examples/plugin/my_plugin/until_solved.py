"""Sample-until-solved: whole traces in rounds of `batch` until one is correct (the
verifier labels finished traces in `search.expand`), the budget is spent, or `max_traces`
traces are drawn. A whole plateau strategy in one file."""

from __future__ import annotations

import time

from policies import Policy
from search import Budget, SearchResult
from search.expand import Expansion, Sampler, expand, finish, majority_vote, start
from tasks import Problem, Task


class UntilSolved:
    name = "until_solved"

    def __init__(self, batch: int = 4, max_traces: int = 16, max_new_tokens: int = 96, temperature: float = 1.0,
                 seed: int = 0):
        self.batch, self.max_traces, self.seed = batch, max_traces, seed
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, max_depth=1)

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        started, rounds = time.perf_counter(), 0
        states = start(problems, task, budget, self.name)
        while requests := [Expansion(s, 0, self.batch) for s in states if self.open(s)]:
            expand(requests, policy, task, self.sampler, seed=self.seed + rounds, iteration=rounds, step=False)
            rounds += 1
        for s in states:
            if any(s.tree[c]["reward"] == 1.0 for c in s.tree.children(0)):
                s.stop_reason = "size"  # solved: the strategy's own stopping rule
        answers = [majority_vote([s.tree[c]["answer"] for c in s.tree.children(0)]) for s in states]
        return finish(states, answers, started)

    def open(self, state) -> bool:
        kids = state.tree.children(0)
        return not state.done and len(kids) < self.max_traces and not any(state.tree[c]["reward"] == 1.0 for c in kids)
