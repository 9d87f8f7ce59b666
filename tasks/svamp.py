"""SVAMP arithmetic word problems (Patel et al., 2021): `SVAMP.json`, a list of objects
with `ID`, `Body`, `Question`, `Equation` and `Answer`.

The question shown is `Body + " " + Question`; the gold answer is `Answer` (normalised by
`tasks.expr.format_number`). SVAMP has no official train split, so a `seed`-shuffle
puts `train_size` problems in "train" and the rest in "test" (all 1,000 rows in total).
The reference trace is the `Equation` evaluated in one step (`( 76.0 - 25.0 ) = 51`) and
the final line. Trace format and prompt styles: `tasks.word_problem`. No dense reward.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from functools import cached_property

from tasks.base import Problem, Splits
from tasks.data import data_path
from tasks.expr import format_number
from tasks.word_problem import WordProblemTask


class SVAMP(WordProblemTask):
    name = "svamp"

    def __init__(self, path: str, train_size: int = 300, prompt_style: str = "plain", fewshot_k: int = 4,
                 seed: int = 0) -> None:
        super().__init__(prompt_style, fewshot_k, seed)
        self.path, self.train_size = data_path(path, "svamp"), train_size
        self._splits = Splits(self.name, ("train", "test"), lambda split: self._split_lists[split])

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        return self._splits.get(split, limit, seed)

    @cached_property
    def _split_lists(self) -> dict[str, list[Problem]]:
        rows = self._load()
        order = list(range(len(rows)))
        random.Random(self.seed).shuffle(order)
        cut = min(self.train_size, len(rows))
        return {"train": [rows[i] for i in sorted(order[:cut])], "test": [rows[i] for i in sorted(order[cut:])]}

    def _load(self) -> list[Problem]:
        file = self.path if self.path.suffix == ".json" else self.path / "SVAMP.json"
        if not file.is_file():
            raise FileNotFoundError(f"task.path: svamp file {file} does not exist")
        try:
            rows = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(rows, list):
            raise ValueError(f"{file}: expected a JSON list of problems")
        problems = []
        for index, row in enumerate(rows):
            try:
                body, question, answer = row["Body"].strip(), row["Question"].strip(), Fraction(str(row["Answer"]))
                meta = {"equation": str(row.get("Equation", "")).strip(), "source": f"{file}#{index}"}
                problems.append(Problem(f"svamp-{row.get('ID', index)}", f"{body} {question}", format_number(answer), meta))
            except (KeyError, TypeError, AttributeError, ValueError) as err:
                raise ValueError(f"{file}: problem #{index} (0-based) is malformed: {err!r}") from None
        return problems

    def reference_traces(self, problem: Problem) -> list[str]:
        equation = problem.meta["equation"]
        step = f"{equation} = {problem.answer}\n" if equation else ""
        return [step + self.final_line(problem.answer)]
