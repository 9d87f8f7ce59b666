"""Best-of-N sampling: `n` independent full traces per problem, a depth-1 tree.

The baseline every structured search is compared against at equal tokens. Each round
asks for up to `batch` more traces of every unfinished problem in one `policy.sample`
call; the strategy's answer is the majority vote of the extracted answers. `n: null`
keeps drawing until the budget is spent.
"""

from __future__ import annotations

import time

from policies import Policy
from search.budget import Budget, require_budget
from search.expand import Sampler, draw_traces, finish, majority_vote, start
from search.progress import SearchBar
from search.result import SearchResult
from tasks import Problem, Task


class Sampling:
    name = "sampling"

    def __init__(self, n: int | None = 8, batch: int = 8, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, progress: bool = False):
        if (n is not None and n < 1) or batch < 1:
            raise ValueError(f"search.n and search.batch must be >= 1, got n={n}, batch={batch}")
        self.n, self.batch, self.seed, self.progress = n, batch, seed, progress
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, max_depth=1)

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        started = time.perf_counter()
        if self.n is None:
            require_budget(budget, "n")
        states = start(problems, task, budget, self.name)
        bar = SearchBar(len(states), self.name, self.progress)
        rounds = draw_traces(states, [s.tree.root for s in states], self.n, self.batch, policy, task, self.sampler,
                             seed=self.seed,
                             on_round=lambda open_: bar.show(len(states) - open_, sum(s.meter.tokens for s in states)))
        bar.close()
        answers = [majority_vote([s.tree[c]["answer"] for c in s.tree.children(s.tree.root)]) for s in states]
        for s in states:
            s.tree.graph.graph["meta"]["rounds"] = rounds
        return finish(states, answers, started)
