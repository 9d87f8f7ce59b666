"""Monte Carlo tree search over reasoning steps (AlphaZero / ExIt style).

Each round runs one simulation of every problem: select down the tree by PUCT (prior =
the step's length-normalised policy probability, normalised over siblings) or UCT, expand
the reached node with `k` sampled children (or one more child under progressive
widening), score the new children with the evaluator, and back their values up the path.
The expansions of all problems form one batched `policy.sample` call per round.
Selection never enters a finished subtree (a closed node), so every simulation spends
tokens and a tree whose every path has finished ends the search ("exhausted").
`n_simulations: null` simulates until the budget is spent.
"""

from __future__ import annotations

import math

import numpy as np

from policies import Policy
from search.budget import require_budget
from search.expand import Expansion, ProblemState
from search.stepwise import StepwiseSearch
from tasks import Task


class MCTS(StepwiseSearch):
    name = "mcts"

    def __init__(self, n_simulations: int | None = 32, k: int = 4, selection: str = "puct", c_explore: float = 1.5,
                 backup: str = "mean", dirichlet_alpha: float = 0.3, dirichlet_eps: float = 0.25,
                 widening: float | None = None, widening_exponent: float = 0.5, **kwargs):
        kwargs.setdefault("answer_by", "most_visited")
        super().__init__(**kwargs)
        if selection not in ("puct", "uct") or backup not in ("mean", "max"):
            raise ValueError(f"search.selection must be puct|uct and search.backup mean|max, got {selection!r}, {backup!r}")
        self.n_simulations, self.k, self.selection, self.c = n_simulations, k, selection, c_explore
        self.backup_rule, self.alpha, self.eps = backup, dirichlet_alpha, dirichlet_eps
        self.widening, self.widening_exponent = widening, widening_exponent

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        if self.n_simulations is None and states:
            require_budget(states[0].meter.budget, "n_simulations")
        for s in states:
            s.scratch.update(sims=0, value_sum={}, noise={}, closed=set())
        while live := self.live(states, self.has_work):
            requests, paths = [], []
            for s in live:
                s.scratch["sims"] += 1
                path = self.select(s)
                n_new = self.k if not s.tree.children(path[-1]) or self.widening is None else 1
                requests.append(Expansion(s, path[-1], n_new))
                paths.append(path)
            children = self.grow(requests, policy, task)
            items = [(e.state, c) for e, kids in zip(requests, children) for c in kids]
            self.score(items, policy, task)
            for e, path, kids in zip(requests, paths, children):
                for c in kids:
                    self.backup(e.state, path + [c], e.state.tree[c]["value"])
                self.close(e.state, path)

    def has_work(self, state: ProblemState) -> bool:
        """Simulations left, and an open node to grow; an exhausted tree says so."""
        if state.tree.root in state.scratch["closed"]:
            state.stop_reason = "exhausted"
            return False
        return self.n_simulations is None or state.scratch["sims"] < self.n_simulations

    def close(self, state: ProblemState, path: list[int]) -> None:
        """Mark nodes with nothing left to grow, from the end of `path` up: a terminal, or
        a node (without widening) whose children are all closed. Selection never enters a
        closed node, so every simulation grows the tree (no round is spent re-visiting
        finished traces) and a fully finished tree ends the search."""
        tree, closed = state.tree, state.scratch["closed"]
        closed.update(c for c in tree.children(path[-1]) if tree[c]["terminal"])
        for node in reversed(path):
            kids = tree.children(node)
            if self.widening is not None or not kids or not all(c in closed for c in kids):
                return
            closed.add(node)

    def can_grow(self, state: ProblemState, node: int) -> bool:
        """Whether selection should stop at `node` and give it new children (with
        widening, also when every child it has is closed)."""
        d, kids = state.tree[node], state.tree.children(node)
        if d["terminal"]:
            return False
        if not kids:
            return True
        if self.widening is None:
            return False
        closed = state.scratch["closed"]
        return all(c in closed for c in kids) or len(kids) < math.ceil(
            self.widening * max(1, d["visits"]) ** self.widening_exponent)

    def select(self, state: ProblemState) -> list[int]:
        path = [state.tree.root]
        while not self.can_grow(state, path[-1]):
            path.append(self.best_child(state, path[-1]))
        return path

    def priors(self, state: ProblemState, node: int, children: list[int]) -> np.ndarray:
        p = np.array([state.tree[c]["prior"] or 1.0 for c in children], dtype=float)
        p = p / p.sum()
        if node == state.tree.root and self.eps > 0:
            noise = state.scratch["noise"]
            if len(noise) != len(children):
                draw = self.rng.dirichlet([self.alpha] * len(children))
                noise.clear()
                noise.update(zip(children, draw))
            p = (1 - self.eps) * p + self.eps * np.array([noise[c] for c in children])
        return p

    def best_child(self, state: ProblemState, node: int) -> int:
        """The open child with the best PUCT / UCT score."""
        tree, children = state.tree, state.tree.children(node)
        n_parent = max(1, tree[node]["visits"])
        q = np.array([tree[c]["value"] or 0.0 for c in children], dtype=float)
        n = np.array([tree[c]["visits"] for c in children], dtype=float)
        if self.selection == "puct":
            score = q + self.c * self.priors(state, node, children) * math.sqrt(n_parent) / (1 + n)
        else:
            score = q + self.c * np.sqrt(math.log(n_parent) / np.maximum(n, 1e-9))
        score[[c in state.scratch["closed"] for c in children]] = -np.inf
        return children[int(np.argmax(score))]

    def backup(self, state: ProblemState, path: list[int], value: float) -> None:
        """Add one visit of `value` along `path`; node value is the mean (or max) seen."""
        tree, sums = state.tree, state.scratch["value_sum"]
        for node in path:
            d = tree[node]
            d["visits"] += 1
            sums[node] = sums.get(node, 0.0) + value
            if self.backup_rule == "mean":
                d["value"] = sums[node] / d["visits"]
            else:
                d["value"] = value if d["value"] is None else max(d["value"], value)
