"""The formal state space of Countdown and the Game of 24, for guide networks (XoT).

A task opts in to guide search by returning one of these from `task.state_space()`. A
state is the numbers left (in the order the task's `left:` list writes them) and the
target; an action combines two of them with an operation; applying it appends the step
in the task's own format, so a sequence of actions *is* a trace the task's verifier
judges. The rules come from `tasks.countdown_solver.combine` (positive results, integral
unless fractions are allowed), the same ones `tasks.countdown` checks.

Actions have fixed ids so a network can score them: pair p of slots (i < j, in
`itertools.combinations` order) times six kinds `a+b, a*b, a-b, b-a, a/b, b/a`, where
a, b are the numbers in slots i, j. `encode` gives a fixed-length feature vector: five
features per number slot and three per action (what the action would produce), so a
small MLP can read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Any

from tasks.base import Problem
from tasks.canonical import canonical
from tasks.countdown import _number_text
from tasks.countdown_solver import combine, reachable, solve
from tasks.expr import BinOp, Node, Num

KINDS = (("+", False), ("*", False), ("-", False), ("-", True), ("/", False), ("/", True))
NUMBER_FEATURES, ACTION_FEATURES, GLOBAL_FEATURES = 5, 3, 2
_LOG_SCALE = math.log1p(10_000)


@dataclass(frozen=True)
class CountdownState:
    """Numbers left with the expression over the original numbers behind each, the steps
    written so far, and the expression of the first step result equal to the target."""

    problem: Problem
    target: Fraction
    numbers: tuple[Fraction, ...]
    exprs: tuple[Node, ...]
    steps: tuple[str, ...] = ()
    reached: Node | None = None


class CountdownSpace:
    """States, legal actions and rendering for a `Countdown` task (and its `Game24`)."""

    def __init__(self, task: Any):
        self.task = task
        self.slots = task.max_numbers
        self.pairs = list(combinations(range(self.slots), 2))
        self.n_actions = len(self.pairs) * len(KINDS)
        self.feature_size = self.slots * NUMBER_FEATURES + self.n_actions * ACTION_FEATURES + GLOBAL_FEATURES

    def spec(self) -> dict[str, Any]:
        """What the state space's rules depend on (part of a trained guide's cache key)."""
        return {"space": "countdown", "slots": self.slots, "allow_fractions": self.task.allow_fractions,
                "use_all": self.task.use_all}

    def initial(self, problem: Problem) -> CountdownState:
        numbers = tuple(Fraction(n) for n in problem.meta["numbers"])
        if len(numbers) > self.slots:
            raise ValueError(f"problem {problem.id}: {len(numbers)} numbers, the state space has {self.slots} slots")
        return CountdownState(problem, Fraction(problem.meta["target"]), numbers, tuple(Num(n) for n in numbers))

    # ---- rules ------------------------------------------------------------------------

    def actions(self, state: CountdownState) -> list[int]:
        """Legal action ids; of actions writing the same step (equal numbers), only the first."""
        if self.is_terminal(state):
            return []
        legal, seen = [], set()
        for p, (i, j) in enumerate(self.pairs):
            if j >= len(state.numbers):
                continue
            for op, swapped, result in combine(state.numbers[i], state.numbers[j], self.task.allow_fractions):
                key = (state.numbers[i], state.numbers[j], op, swapped)
                if key not in seen:
                    seen.add(key)
                    legal.append(p * len(KINDS) + KINDS.index((op, swapped)))
        return legal

    def apply(self, state: CountdownState, action: int) -> CountdownState:
        i, j, op, swapped = self._decode(action)
        (a, x), (b, y) = (state.numbers[i], state.exprs[i]), (state.numbers[j], state.exprs[j])
        if swapped:
            (a, x), (b, y) = (b, y), (a, x)
        result = dict((o, r) for o, s, r in combine(a, b, self.task.allow_fractions) if not s).get(op)
        if result is None:
            raise ValueError(f"action {action} ({_number_text(a)} {op} {_number_text(b)}) is illegal in this state")
        rest = [k for k in range(len(state.numbers)) if k not in (i, j)]
        numbers = tuple(state.numbers[k] for k in rest) + (Fraction(result),)
        exprs = tuple(state.exprs[k] for k in rest) + (BinOp(op, x, y),)
        left = " ".join(map(_number_text, numbers))
        step = f"{_number_text(a)} {op} {_number_text(b)} = {_number_text(result)} (left: {left})\n"
        reached = state.reached
        if reached is None and result == state.target:
            reached = exprs[-1]
        return CountdownState(state.problem, state.target, numbers, exprs, state.steps + (step,), reached)

    def is_solved(self, state: CountdownState) -> bool:
        if self.task.use_all:
            return len(state.numbers) == 1 and state.numbers[0] == state.target
        return state.reached is not None

    def is_terminal(self, state: CountdownState) -> bool:
        return self.is_solved(state) or len(state.numbers) < 2

    def solvable(self, state: CountdownState) -> bool:
        """Whether the target can still be reached from `state` (exhaustive; the oracle)."""
        if self.is_solved(state) or len(state.numbers) < 2:
            return self.is_solved(state)
        if self.task.use_all:
            return bool(solve(list(state.numbers), state.target, self.task.allow_fractions, use_all=True))
        return state.target in reachable(list(state.numbers), self.task.allow_fractions)

    # ---- rendering and judging --------------------------------------------------------

    def trace(self, state: CountdownState) -> str:
        """The steps taken to reach `state`, plus the final answer step once solved."""
        return "".join(state.steps) + (self.answer_step(state) if self.is_solved(state) else "")

    def answer_step(self, state: CountdownState) -> str:
        expr = state.exprs[0] if self.task.use_all else state.reached
        return f"answer: {canonical(expr)}\n"

    def reward(self, state: CountdownState) -> float:
        """The task's verifier on the rendered trace: the guide's terminal reward."""
        return self.task.reward(state.problem, self.trace(state))

    def encode(self, state: CountdownState) -> list[float]:
        """`feature_size` floats: per slot (present, value/target, log value, == target,
        integral), per action (legal, result/target, result == target), then (numbers left
        / slots, log target)."""
        t = state.target
        out: list[float] = []
        for k in range(self.slots):
            if k < len(state.numbers):
                v = state.numbers[k]
                out += [1.0, _ratio(v, t), math.log1p(v) / _LOG_SCALE, float(v == t), float(v.denominator == 1)]
            else:
                out += [0.0] * NUMBER_FEATURES
        results = {}
        for a in self.actions(state):
            i, j, op, swapped = self._decode(a)
            x, y = (state.numbers[j], state.numbers[i]) if swapped else (state.numbers[i], state.numbers[j])
            results[a] = dict((o, r) for o, s, r in combine(x, y, self.task.allow_fractions) if not s)[op]
        for a in range(self.n_actions):
            r = results.get(a)
            out += [0.0, 0.0, 0.0] if r is None else [1.0, _ratio(Fraction(r), t), float(r == t)]
        return out + [len(state.numbers) / self.slots, math.log1p(t) / _LOG_SCALE]

    def _decode(self, action: int) -> tuple[int, int, str, bool]:
        if not 0 <= action < self.n_actions:
            raise ValueError(f"action id {action} is outside 0..{self.n_actions - 1}")
        (i, j), (op, swapped) = self.pairs[action // len(KINDS)], KINDS[action % len(KINDS)]
        return i, j, op, swapped


def _ratio(value: Fraction, target: Fraction) -> float:
    return min(float(value / target), 4.0) / 4.0
