"""The task contract: what a reasoning problem is and how a trace of it is judged.

A *trace* is the text a policy writes after the prompt: a sequence of steps, each ending
with the task's `step_stop` delimiter, the last of which is a final-answer step. Search
works on steps, training on whole traces, and both judge them only through this class, so
a task's format is defined in exactly one file.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Most steps `Task.split_steps` returns; no policy here writes a trace of more lines.
MAX_STEPS = 1000
#: Characters of a trace `Task.solution_key` normalises; the rest is hashed.
MAX_KEY_CHARS = 100_000


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


class Splits:
    """A task's named splits, each loaded on first use and kept: the one place a split name
    is checked and `limit` applied. `aliases` maps another name onto a split ("tot" ->
    "test" in the Game of 24)."""

    def __init__(self, task: str, names: Iterable[str], load: Callable[[str], list[Problem]],
                 aliases: Mapping[str, str] | None = None) -> None:
        self.task, self.names, self.load = task, tuple(names), load
        self.aliases = dict(aliases or {})
        self._loaded: dict[str, list[Problem]] = {}

    def get(self, split: str, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The problems of `split` in their fixed order; with `limit`, a `seed`-chosen subset."""
        name = self.aliases.get(split, split)
        if name not in self.names:
            known = sorted({*self.names, *self.aliases})
            raise ValueError(f"unknown split {split!r} for task {self.task}; known: {known}")
        if name not in self._loaded:
            self._loaded[name] = self.load(name)
        return choose(self._loaded[name], limit, seed)


def fewshot_prefix(task: "Task", k: int, rng_seed: object, plain_prompt: Callable[[Problem], str]) -> str:
    """`k` train problems chosen with `rng_seed`, each as its plain prompt, its first reference
    trace and a blank line: the text a few-shot prompt puts before the question."""
    pool = task.problems("train")
    shots = random.Random(rng_seed).sample(pool, min(k, len(pool)))
    return "".join(f"{plain_prompt(p)}{task.reference_traces(p)[0]}\n" for p in shots)


class Task(ABC):
    """A family of problems with its prompt format, step delimiter and verifiers."""

    name: str = "task"
    #: The one place a task's step delimiter is defined; a step is text up to and
    #: including it. Samplers stop on it, search splits traces on it.
    step_stop: str = "\n"
    #: How prompts are written; "chat" asks the run for the policy's chat template
    #: (`set_chat_template`) before the first prompt.
    prompt_style: str = "plain"

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

    #: True when `step_reward` compares steps with the gold solution (GSM8K's intermediate
    #: values) rather than checking them from the problem statement alone: it may then be a
    #: training reward, never a search heuristic (`search/evaluator=step_check` refuses it).
    step_reward_reads_gold: bool = False

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float | None:
        """Dense (process) reward of `step` written after `prefix`; None if the task has none."""
        return None

    @abstractmethod
    def reference_traces(self, problem: Problem) -> list[str]:
        """Correct traces for `problem` in this task's step format (for SFT)."""

    def solution_key(self, problem: Problem, text: str) -> str:
        """A key under which two correct traces count as the same solution
        (for "distinct correct solutions per problem"). Default: the step texts with
        whitespace normalised; past `MAX_KEY_CHARS` (no real trace is that long) the rest
        is hashed as written, so a 10 MB string costs milliseconds, not a list of words."""
        if len(text) <= MAX_KEY_CHARS:
            return " ".join(text.split())
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return " ".join(text[:MAX_KEY_CHARS].split()) + f" #{digest}"

    def solutions(self, problem: Problem) -> list[str] | None:
        """Every solution of `problem` as `solution_key`s, when the task can enumerate them
        (an exhaustive solver); None when it cannot. Coverage and the in/beyond-support
        split of the plateau study need it."""
        return None

    def descriptor(self, problem: Problem, text: str) -> Hashable | None:
        """A behaviour descriptor of a trace (MAP-Elites niches in `search=evolution`);
        None when the task has none, and niches fall back to the trace's answer."""
        return None

    def set_chat_template(self, template: Any) -> None:
        """Receive the policy's chat template (a tokenizer or a messages -> text function)
        when `prompt_style` is "chat"; a task without a chat style needs nothing."""

    def state_space(self) -> Any:
        """The task's formal state space (`tasks.state_space`) for guide searches
        (`search=xot`); a task without one refuses."""
        raise ValueError(f"task {self.name!r} has no formal state space (a state_space() method); "
                         "search=xot needs one")

    def split_steps(self, text: str) -> list[str]:
        """Split a trace into steps, each keeping its delimiter (the last may lack it).
        At most `MAX_STEPS` steps: the rest of a longer text is the last one, so the steps
        still join to `text` while hostile input (10 MB of newlines) costs microseconds."""
        steps, start = [], 0
        while len(steps) < MAX_STEPS - 1:
            end = text.find(self.step_stop, start)
            if end < 0:
                break
            steps.append(text[start : end + len(self.step_stop)])
            start = end + len(self.step_stop)
        if start < len(text):
            steps.append(text[start:])
        return steps
