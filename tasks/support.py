"""The *support* of an SFT data set: which solution patterns it demonstrates.

The plateau question is whether RL (or search) ever solves what the SFT data never
showed. A `SupportRule` says which patterns are demonstrated — here by the operations a
solution uses (`exclude_ops: ["-"]`: no reference trace subtracts) — so that

* the SFT base is built only on reference traces inside the support, and
* evaluation problems split into `in_support` (some solution uses only demonstrated
  patterns) and `beyond_support` (every solution needs a held-out one), which a task
  with an exhaustive solver (`Task.solutions`) can decide exactly.

Patterns are read off a solution's canonical answer: the sorted operations it uses and
its shape with numbers written `n` (`n * (n - n)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.base import Problem, Task

OPERATIONS = "+-*/"
SLICES = ("in_support", "beyond_support")


def pattern(answer: str) -> tuple[tuple[str, ...], str]:
    """(sorted operations, shape) of a canonical answer expression."""
    return tuple(sorted(ch for ch in answer if ch in OPERATIONS)), re.sub(r"\d+", "n", answer)


@dataclass(frozen=True)
class SupportRule:
    """Which solutions the SFT data may demonstrate: those using no `exclude_ops`."""

    exclude_ops: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [op for op in self.exclude_ops if op not in OPERATIONS]
        if bad:
            raise ValueError(f"support.exclude_ops: {bad} are not operations (choose from {list(OPERATIONS)})")

    def covers(self, answer: str) -> bool:
        return not set(pattern(answer)[0]) & set(self.exclude_ops)

    def slice_of(self, task: Task, problem: Problem) -> str | None:
        """`in_support`, `beyond_support`, or None when the task cannot list solutions."""
        solutions = task.solutions(problem)
        if not solutions:
            return None
        return "in_support" if any(self.covers(s) for s in solutions) else "beyond_support"
