"""Sums: add a few numbers one step at a time. A whole plateau task in one file.

    prompt   Add: 3 4 5\n
    steps    3 + 4 = 7\n   7 + 5 = 12\n
    final    answer: 12\n
"""

from __future__ import annotations

import random
import re

from tasks import Problem, Task
from tasks.base import Splits

STEP = re.compile(r"(\d{1,6}) \+ (\d{1,6}) = (\d{1,7})")


class Sums(Task):
    name = "sums"
    step_stop = "\n"

    def __init__(self, numbers: int = 3, high: int = 9, train_size: int = 200, test_size: int = 50, seed: int = 0):
        self.numbers, self.high, self.sizes, self.seed = numbers, high, {"train": train_size, "test": test_size}, seed
        self._splits = Splits(self.name, ("train", "test"), self._make)

    def _make(self, split: str) -> list[Problem]:
        rng = random.Random(f"{self.seed}:{split}")
        rows = [[rng.randint(1, self.high) for _ in range(self.numbers)] for _ in range(self.sizes[split])]
        return [Problem(f"sums-{split}-{i}", "Add: " + " ".join(map(str, r)), str(sum(r)), {"numbers": r})
                for i, r in enumerate(rows)]

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        return self._splits.get(split, limit, seed)

    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def is_final(self, step: str) -> bool:
        return step.startswith("answer:")

    def extract_answer(self, text: str) -> str | None:
        found = re.findall(r"^answer: (\d{1,7})$", text[:10_000], flags=re.M)
        return found[-1] if found else None

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return answer == problem.answer

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float | None:
        """1.0 for a correct addition, 0.0 otherwise; the final step scores the answer."""
        if self.is_final(step):
            return float(self.check_answer(problem, self.extract_answer(step)))
        m = STEP.fullmatch(step.strip())
        return float(m is not None and int(m[1]) + int(m[2]) == int(m[3]))

    def reference_traces(self, problem: Problem) -> list[str]:
        total, lines = problem.meta["numbers"][0], []
        for x in problem.meta["numbers"][1:]:
            lines.append(f"{total} + {x} = {total + x}\n")
            total += x
        return ["".join(lines) + f"answer: {total}\n"]
