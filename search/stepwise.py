"""What every step-level tree search shares: decoding knobs, an evaluator, seeding per
round, and how the submitted answer is picked from the finished tree."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from policies import Policy
from search.budget import Budget
from search.evaluators import Evaluator, Item, TerminalEvaluator
from search.expand import Expansion, ProblemState, Sampler, expand, finish, majority_vote, start
from search.progress import SearchBar
from search.result import SearchResult
from search.tree import SearchTree
from tasks import Problem, Task

ANSWER_BY = ("vote", "best_value", "most_visited")


def pick_answer(tree: SearchTree, how: str) -> str | None:
    """`vote`: majority over terminal answers; `best_value`: the terminal with the highest
    value (the evaluator's, so with the `terminal` evaluator it is the verifier's pick);
    `most_visited`: follow the most-visited child from the root (MCTS; equal visits, as in
    a searched-out tree, go to the higher value), falling back to the vote when that path
    does not end in a finished trace."""
    terminals = tree.terminals()
    if how == "best_value":
        scored = [n for n in terminals if tree[n]["value"] is not None]
        return tree[max(scored, key=lambda n: (tree[n]["value"], -n))]["answer"] if scored else None
    if how == "most_visited":
        node = tree.root
        while children := tree.children(node):
            node = max(children, key=lambda c: (tree[c]["visits"], tree[c]["value"] or 0.0, -c))
        if tree[node]["terminal"]:
            return tree[node]["answer"]
    return majority_vote([tree[n]["answer"] for n in terminals])


def open_work(state: ProblemState, frontier: str, stop_after: int | None) -> bool:
    """For searches that keep an agenda (a DFS stack, a best-first heap) and stop after
    `stop_after` finished traces (None: never): whether `state` has more to do. An empty
    agenda means the tree is exhausted, and the state says so."""
    if stop_after is not None and state.scratch["finished"] >= stop_after:
        return False
    if not state.scratch[frontier]:
        state.stop_reason = "exhausted"
        return False
    return True


class StepwiseSearch:
    """Base of the step-level strategies; subclasses implement `run(states, policy, task)`
    as rounds of `self.grow(...)` and `self.score(...)`."""

    name = "stepwise"

    def __init__(self, evaluator: Evaluator | None = None, max_depth: int = 16, max_new_tokens: int = 64,
                 temperature: float = 1.0, top_p: float = 1.0, answer_by: str = "vote", seed: int = 0,
                 progress: bool = False):
        if answer_by not in ANSWER_BY:
            raise ValueError(f"search.answer_by must be one of {ANSWER_BY}, got {answer_by!r}")
        if isinstance(evaluator, str):  # search.evaluator=terminal instead of the group choice
            raise ValueError(f"search.evaluator={evaluator!r}: choose an evaluator through its config group, "
                             f"search/evaluator={evaluator}")
        self.evaluator = evaluator if evaluator is not None else TerminalEvaluator()  # None: the verifier's
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, max_depth=max_depth)
        self.answer_by, self.seed, self.progress = answer_by, seed, progress
        self.rng = np.random.default_rng(seed)
        self.round = 0
        self.bar: SearchBar | None = None

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        started = time.perf_counter()
        self.rng, self.round = np.random.default_rng(self.seed), 0
        states = start(problems, task, budget, self.name)
        self.bar = SearchBar(len(states), self.name, self.progress)
        try:
            self.run(states, policy, task)
        finally:
            self.bar.close()
        for s in states:
            s.tree.graph.graph["meta"].update(rounds=self.round, **{k: v for k, v in s.scratch.items() if k.startswith("log_")})
        return finish(states, [pick_answer(s.tree, self.answer_by) for s in states], started)

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        raise NotImplementedError

    def grow(self, expansions: list[Expansion], policy: Policy, task: Task) -> list[list[int]]:
        """One batched generation round; also advances the round counter and seed."""
        children = expand(expansions, policy, task, self.sampler, seed=self.seed * 100_003 + self.round,
                          iteration=self.round)
        self.round += 1
        return children

    def score(self, items: list[Item], policy: Policy, task: Task) -> list[float]:
        """Evaluate nodes of all problems in one batch and store each value on its node."""
        values = self.evaluator.evaluate(items, policy, task, seed=self.seed * 100_003 + 50_000 + self.round)
        out = []
        for (state, node), v in zip(items, values):
            if v is None:  # the budget paid for no judgement: a placeholder value, no score
                state.scratch["log_unscored"] = state.scratch.get("log_unscored", 0) + 1
            state.tree[node]["score"] = v
            state.tree[node]["value"] = v = self.evaluator.neutral if v is None else v
            out.append(v)
        return out

    def live(self, states: list[ProblemState], has_work: Callable[[ProblemState], bool]) -> list[ProblemState]:
        """The problems with work left this round (and the progress bar's count of the rest)."""
        out = [s for s in states if not s.done and not s.meter.exhausted and has_work(s)]
        if self.bar is not None:
            self.bar.show(len(states) - len(out), sum(s.meter.tokens for s in states))
        return out
