"""GSM8K grade-school math word problems (Cobbe et al., 2021).

Data: the official JSONL files `<path>/<split>.jsonl` ("train", "test"; a relative `path`
is read under the data root, `tasks.data`), one
`{"question": ..., "answer": ...}` object per line; or, when `path` is null, the Hugging
Face dataset `hf_name` (config "main") through `datasets`, imported only then.

The reference solution is the answer text before `#### <gold>`: its lines are the steps.
Calculator annotations `<<48/2=24>>` are stripped from every text the model sees; their
results, with those written after a step's last `=`, are kept in
`Problem.meta["intermediates"]` (normalised strings, first occurrence order).

Trace format and prompt styles: `tasks.word_problem`. Dense reward (`step_reward`), the
heuristic of Havrilla et al. (2024): a step earns 1.0 when its result -- the first number
after its last `=` -- equals an intermediate result or the gold answer of the reference
solution (within `tasks.answers.REL_TOL`), 0.0 when it does not; a step with no number
after an `=` computes nothing checkable (`Let x = ...`) and earns 1.0; a final step
earns the outcome reward.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.answers import first_number, parse_number, same_number
from tasks.base import Problem, Splits
from tasks.data import data_path, jsonl_rows
from tasks.expr import format_number
from tasks.word_problem import WordProblemTask

_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def parse_solution(text: str) -> tuple[list[str], list[str], str]:
    """(steps without annotations, intermediate results, gold answer) of a GSM8K answer.
    Intermediate results are those of the calculator annotations and the first number
    after the last `=` of each step (many steps carry no annotation).
    Raises ValueError when the `####` line is missing."""
    body, sep, gold = text.rpartition("####")
    if not sep or parse_number(gold.strip()) is None:
        raise ValueError("no '#### <number>' final answer")
    steps = [line.strip() for line in _ANNOTATION.sub("", body).splitlines() if line.strip()]
    results = [a.rpartition("=")[2] for a in _ANNOTATION.findall(body)]
    results += [step.rpartition("=")[2] for step in steps if "=" in step]
    values = (first_number(r) for r in results)
    intermediates = list(dict.fromkeys(format_number(v) for v in values if v is not None))
    return steps, intermediates, gold.strip().replace(",", "")


class GSM8K(WordProblemTask):
    name = "gsm8k"

    def __init__(self, path: str | None = None, hf_name: str = "openai/gsm8k", prompt_style: str = "plain",
                 fewshot_k: int = 4, seed: int = 0) -> None:
        super().__init__(prompt_style, fewshot_k, seed)
        self.path = None if path is None else data_path(path, "gsm8k")
        self.hf_name = hf_name
        self._splits = Splits(self.name, ("train", "test"), self._load)

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The split in file order; with `limit`, a `seed`-chosen subset (order kept)."""
        return self._splits.get(split, limit, seed)

    def _load(self, split: str) -> list[Problem]:
        if self.path is None:
            import datasets  # optional dependency, imported only for the hub path

            rows = datasets.load_dataset(self.hf_name, "main", split=split)
            return [self._problem(f"{self.hf_name}:{split}", i + 1, row) for i, row in enumerate(rows)]
        file = self.path / f"{split}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"task.path: gsm8k split file {file} does not exist")
        return [self._problem(str(file), number, row) for number, row in jsonl_rows(file)]

    def _problem(self, source: str, number: int, row: object) -> Problem:
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise ValueError(f"{source}:{number}: expected an object with string 'question' and 'answer'")
        try:
            steps, intermediates, gold = parse_solution(row["answer"])
        except ValueError as err:
            raise ValueError(f"{source}:{number}: {err}") from None
        meta = {"steps": steps, "intermediates": intermediates, "source": f"{source}:{number}"}
        return Problem(f"gsm8k-{Path(source).stem}-{number:05d}", row["question"].strip(), gold, meta)

    def reference_traces(self, problem: Problem) -> list[str]:
        return ["".join(f"{s}\n" for s in problem.meta["steps"]) + self.final_line(problem.answer)]

    step_reward_reads_gold = True  # a step is right when its result is one of the gold solution's values

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float:
        if self.is_final(step):
            return self.reward(problem, prefix + step)
        result = first_number(step.rpartition("=")[2][:200]) if "=" in step else None  # bounded
        if result is None:
            return 1.0
        known = [parse_number(v) for v in problem.meta["intermediates"]] + [parse_number(problem.answer)]
        return float(any(same_number(result, k) for k in known))
