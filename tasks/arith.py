"""Synthetic multi-step arithmetic chains: a second tiny-model setting whose solution is a
fixed sequence (one right step at each point) rather than Countdown's search over pairs.

This file is the one place the format is defined:

    prompt   Chain: 7 +3 *2 -5\\n        (apply the operations left to right)
    step     7 + 3 = 10\\n                (current value, next operation, its result)
    final    answer: 15\\n

Every value stays a non-negative integer (`-` never goes below zero, `/` divides exactly).
Difficulty: `min_steps`..`max_steps` operations with operands in `operand_range`.
`step_reward` is 1.0 when the step applies the next operation correctly to the current
value; the final step earns the outcome reward.
"""

from __future__ import annotations

import random
import re
from functools import cached_property

from tasks.base import Problem, Splits, Task

_STEP = re.compile(r"([0-9]{1,15}) ([-+*/]) ([0-9]{1,15}) = ([0-9]{1,15})")  # ASCII digits, as in tasks.answers
_FINAL = re.compile(r"answer: ?([0-9]{1,15})")


class Arith(Task):
    name = "arith"
    step_stop = "\n"

    def __init__(self, min_steps: int = 2, max_steps: int = 4, operand_range: tuple[int, int] = (1, 9),
                 train_size: int = 2000, test_size: int = 200, seed: int = 0) -> None:
        lo, hi = tuple(operand_range)
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"arith config min_steps/max_steps: need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        if not 1 <= lo <= hi:
            raise ValueError(f"arith config operand_range: need 1 <= lo <= hi, got {[lo, hi]}")
        self.min_steps, self.max_steps, self.operand_range = min_steps, max_steps, (lo, hi)
        self.sizes, self.seed = {"test": test_size, "train": train_size}, seed
        self._splits = Splits(self.name, ("train", "test"), lambda split: self._split_lists[split])

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        return self._splits.get(split, limit, seed)

    @cached_property
    def _split_lists(self) -> dict[str, list[Problem]]:
        """Test first, then train; a chain appears at most once across both."""
        rng, seen, chains = random.Random(self.seed), set(), []
        wanted = self.sizes["test"] + self.sizes["train"]
        for _ in range(50 * wanted + 1000):
            if len(chains) == wanted:
                break
            chain = self._chain(rng)
            if chain not in seen:
                seen.add(chain)
                chains.append(chain)
        else:
            raise ValueError(f"arith: only {len(chains)} distinct chains for {wanted} problems; widen operand_range")
        named = {"test": chains[: self.sizes["test"]], "train": chains[self.sizes["test"] :]}
        return {s: [self._problem(f"arith-{s}-{i:05d}", c) for i, c in enumerate(rows)] for s, rows in named.items()}

    def _chain(self, rng: random.Random) -> tuple[int, tuple[tuple[str, int], ...]]:
        start = value = rng.randint(*self.operand_range)
        ops = []
        for _ in range(rng.randint(self.min_steps, self.max_steps)):
            b = rng.randint(*self.operand_range)
            op = rng.choice(["+", "*"] + (["-"] if value >= b else []) + (["/"] if value % b == 0 else []))
            ops.append((op, b))
            value = _apply(value, op, b)
        return start, tuple(ops)

    def _problem(self, problem_id: str, chain: tuple[int, tuple[tuple[str, int], ...]]) -> Problem:
        start, ops = chain
        values = [start]
        for op, b in ops:
            values.append(_apply(values[-1], op, b))
        question = "Chain: " + " ".join([str(start)] + [f"{op}{b}" for op, b in ops])
        return Problem(problem_id, question, str(values[-1]), {"start": start, "ops": [list(o) for o in ops], "values": values})

    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def reference_traces(self, problem: Problem) -> list[str]:
        values, ops = problem.meta["values"], problem.meta["ops"]
        steps = [f"{values[i]} {op} {b} = {values[i + 1]}\n" for i, (op, b) in enumerate(ops)]
        return ["".join(steps) + f"answer: {problem.answer}\n"]

    def is_final(self, step: str) -> bool:
        return step.lstrip().startswith("answer:")

    def extract_answer(self, text: str) -> str | None:
        for step in self.split_steps(text):
            if self.is_final(step):
                match = _FINAL.fullmatch(step.strip()[:40])
                return None if match is None else str(int(match.group(1)))
        return None

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return answer == problem.answer

    def reward(self, problem: Problem, text: str) -> float:
        """1.0 when every step applies the next operation correctly and the answer is right."""
        done = 0
        for step in self.split_steps(text):
            if self.is_final(step):
                return float(done == len(problem.meta["ops"]) and self.check_answer(problem, self.extract_answer(step)))
            if not self._step_ok(problem, done, step):
                return 0.0
            done += 1
        return 0.0

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float:
        prompt = self.prompt(problem)
        prefix = prefix[len(prompt) :] if prefix.startswith(prompt) else prefix
        done = 0
        for previous in self.split_steps(prefix):
            if self.is_final(previous) or not self._step_ok(problem, done, previous):
                return 0.0
            done += 1
        if self.is_final(step):
            return self.reward(problem, prefix + step)
        return float(self._step_ok(problem, done, step))

    def _step_ok(self, problem: Problem, done: int, step: str) -> bool:
        ops, values = problem.meta["ops"], problem.meta["values"]
        match = _STEP.fullmatch(step.strip()[:80])
        if match is None or done >= len(ops):
            return False
        a, op, b, c = match.groups()
        return (int(a), op, int(b), int(c)) == (values[done], ops[done][0], ops[done][1], values[done + 1])


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def arithmetic_corpus(lines: int, operand_range: tuple[int, int] = (1, 9), seed: int = 0) -> list[str]:
    """Generic arithmetic text, `a op b = c\\n` lines in random order: the steps of random
    chains (so results beyond the operand range appear too), with no prompt, no chain and
    no answer line. What a "pretrained" base model reads instead of task solutions."""
    lo, hi = tuple(operand_range)
    if lines < 0 or not 1 <= lo <= hi:
        raise ValueError(f"arithmetic_corpus: need lines >= 0 and 1 <= lo <= hi, got {lines}, {[lo, hi]}")
    chains = Arith(min_steps=1, max_steps=4, operand_range=(lo, hi), seed=seed)
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < lines:
        value, ops = chains._chain(rng)
        for op, b in ops:
            result = _apply(value, op, b)
            out.append(f"{value} {op} {b} = {result}\n")
            value = result
    rng.shuffle(out)
    return out[:lines]
