"""The task contract: what a reasoning problem is and how a trace of it is judged.

A *trace* is the text a policy writes after the prompt: a sequence of steps, each ending
with the task's `step_stop` delimiter, the last of which is a final-answer step. Search
works on steps, training on whole traces, and both judge them only through this class, so
a task's format is defined in exactly one file.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem. `answer` is the gold answer as text; `meta` holds task-specific data
    (the Countdown numbers and target, the GSM8K reference solution, ...)."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def choose(problems: list[Problem], limit: int | None, seed: int) -> list[Problem]:
    """`problems` whole when `limit` is None or large enough, else a `seed`-chosen subset of
    `limit` of them in their original order: how every task's `problems()` applies `limit`."""
    if limit is None or limit >= len(problems):
        return list(problems)
    keep = sorted(random.Random(seed).sample(range(len(problems)), limit))
    return [problems[i] for i in keep]


class Task(ABC):
    """A family of problems with its prompt format, step delimiter and verifiers."""

    name: str = "task"
    #: The one place a task's step delimiter is defined; a step is text up to and
    #: including it. Samplers stop on it, search splits traces on it.
    step_stop: str = "\n"

    @abstractmethod
    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The problems of `split` ("train" / "test" / task-specific), at most `limit`."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The text the policy continues; a trace is appended to it verbatim."""

    @abstractmethod
    def is_final(self, step: str) -> bool:
        """Whether `step` is a final-answer step (the trace ends after it)."""

    @abstractmethod
    def extract_answer(self, text: str) -> str | None:
        """The normalised final answer of a trace, or None when it has none.
        Two traces with equal answers vote together in maj@k."""

    @abstractmethod
    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        """Whether an extracted answer solves `problem` (never by `eval`)."""

    def reward(self, problem: Problem, text: str) -> float:
        """Sparse outcome reward: 1.0 for a correct trace, else 0.0."""
        return float(self.check_answer(problem, self.extract_answer(text)))

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float | None:
        """Dense (process) reward of `step` written after `prefix`; None if the task has none."""
        return None

    @abstractmethod
    def reference_traces(self, problem: Problem) -> list[str]:
        """Correct traces for `problem` in this task's step format (for SFT)."""

    def solution_key(self, problem: Problem, text: str) -> str:
        """A key under which two correct traces count as the same solution
        (for "distinct correct solutions per problem"). Default: the step texts with
        whitespace normalised."""
        return " ".join(text.split())

    def split_steps(self, text: str) -> list[str]:
        """Split a trace into steps, each keeping its delimiter (the last may lack it)."""
        steps, start = [], 0
        while True:
            end = text.find(self.step_stop, start)
            if end < 0:
                if start < len(text):
                    steps.append(text[start:])
                return steps
            steps.append(text[start : end + len(self.step_stop)])
            start = end + len(self.step_stop)
