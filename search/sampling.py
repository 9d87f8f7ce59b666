"""Best-of-N sampling: `n` independent full traces per problem, a depth-1 tree.

The baseline every structured search is compared against at equal tokens. Each round
asks for up to `batch` more traces of every unfinished problem in one `policy.sample`
call; the strategy's answer is the majority vote of the extracted answers.
"""

from __future__ import annotations

import time

from policies import Policy
from search.budget import Budget
from search.expand import Expansion, Sampler, expand, finish, majority_vote, start
from search.result import SearchResult
from tasks import Problem, Task


class Sampling:
    name = "sampling"

    def __init__(self, n: int = 8, batch: int = 8, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0):
        if n < 1 or batch < 1:
            raise ValueError(f"search.n and search.batch must be >= 1, got n={n}, batch={batch}")
        self.n, self.batch, self.seed = n, batch, seed
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, max_depth=1)

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        started = time.perf_counter()
        states = start(problems, task, budget, self.name)
        rounds = 0
        while True:
            requests = [
                Expansion(s, s.tree.root, min(self.batch, self.n - len(s.tree.children(s.tree.root))))
                for s in states if not s.done and len(s.tree.children(s.tree.root)) < self.n
            ]
            if not requests:
                break
            expand(requests, policy, task, self.sampler, seed=self.seed + rounds, iteration=rounds, step=False)
            rounds += 1
        answers = [majority_vote([s.tree[c]["answer"] for c in s.tree.children(s.tree.root)]) for s in states]
        for s in states:
            s.tree.graph.graph["meta"]["rounds"] = rounds
        return finish(states, answers, started)
