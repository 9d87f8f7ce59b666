"""Compute budgets, so that any two strategies can be compared at equal cost.

A budget is per problem: generated tokens and/or policy calls (one batched `sample` call
counts once for every problem that has a request in it). Strategies ask the meter
how many requests to send and how many tokens each may still generate
(`BudgetMeter.allot`), and pass that as each request's `max_new_tokens`, so a budget is
never exceeded, not even by one token.

A strategy's size knob (`search.n`, `n_simulations`, `max_generations`, `stop_after`,
ToT's `restarts`) set to null means "until the budget is spent"; `require_budget` turns
such a config without a budget into one clear error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    tokens_per_problem: int | None = None
    calls_per_problem: int | None = None


def require_budget(budget: Budget, key: str) -> None:
    """`search.<key>: null` means "run until the budget is spent", so a budget must exist."""
    if budget.tokens_per_problem is None and budget.calls_per_problem is None:
        raise ValueError(f"search.{key}=null runs until the budget is spent: set budget.tokens_per_problem "
                         f"(or budget.calls_per_problem), or give search.{key} a number")


@dataclass
class BudgetMeter:
    """What one problem has spent against its budget."""

    budget: Budget
    tokens: int = 0
    calls: int = 0

    @property
    def tokens_left(self) -> int | None:
        if self.budget.tokens_per_problem is None:
            return None
        return max(0, self.budget.tokens_per_problem - self.tokens)

    @property
    def exhausted(self) -> bool:
        b = self.budget
        return (b.tokens_per_problem is not None and self.tokens >= b.tokens_per_problem) or (
            b.calls_per_problem is not None and self.calls >= b.calls_per_problem
        )

    def allot(self, max_new_tokens: int, requests: int) -> tuple[int, int]:
        """How many of `requests` requests issued together to send, and the most tokens
        each may generate, so that their sum stays inside the budget.

        Splitting what is left evenly over every request would leave each a stub too
        short to finish a step (and mark the problem done while tokens remain); instead
        the tail of a budget goes to fewer requests of at least half a step each. Returns
        (0, 0) only when nothing is left to spend.
        """
        if requests <= 0:
            return 0, 0
        left = self.tokens_left
        if left is None:
            return requests, max_new_tokens
        if left <= 0:
            return 0, 0
        floor = max(1, min(max_new_tokens, left) // 2)
        sent = min(requests, left // floor)
        return sent, min(max_new_tokens, left // sent)

    def charge(self, tokens: int, calls: int = 0) -> None:
        self.tokens += tokens
        self.calls += calls
