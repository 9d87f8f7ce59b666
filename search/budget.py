"""Compute budgets, so that any two strategies can be compared at equal cost.

A budget is per problem: generated tokens and/or policy calls (one batched `sample` call
counts once for every problem that has a request in it). Strategies ask the meter how
many tokens a request may still generate and pass that as the request's
`max_new_tokens`, so a budget is never exceeded, not even by one token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    tokens_per_problem: int | None = None
    calls_per_problem: int | None = None


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

    def cap(self, max_new_tokens: int, requests: int = 1) -> int:
        """The most tokens each of `requests` requests issued together may generate, so
        that their sum stays inside the budget (0 means: do not issue them)."""
        left = self.tokens_left
        return max_new_tokens if left is None else min(max_new_tokens, left // max(1, requests))

    def charge(self, tokens: int, calls: int = 0) -> None:
        self.tokens += tokens
        self.calls += calls
