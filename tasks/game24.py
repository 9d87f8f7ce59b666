"""The Game of 24: Countdown with four numbers, target 24, every number used once, and
fractions allowed (`5 * (5 - 1 / 5)`). Trace format, rules and verifiers are Countdown's
(`tasks.countdown`); only the problems differ.

Problems come from `24.csv` (columns `Rank,Puzzles,...`, puzzles like `1 1 4 6`, ranked by
human solve time) when `path` is set (relative: under the data root, `tasks.data`): split "tot" (also "test") is ranks 901-1000, as in
the Tree-of-Thoughts paper; "train" is every other rank. With `path: null` the problems are
generated (numbers 1-13, solvable, seeded) like Countdown's.
"""

from __future__ import annotations

import csv

from tasks.base import Problem
from tasks.countdown import Countdown
from tasks.data import data_path

TOT_RANKS = range(901, 1001)


class Game24(Countdown):
    name = "game24"
    split_aliases = {"tot": "test"}

    def __init__(self, path: str | None = None, train_size: int = 1000, test_size: int = 100, seed: int = 0,
                 reference_count: int = 4) -> None:
        super().__init__(4, 4, (1, 13), (24, 24), train_size, test_size, seed,
                         allow_fractions=True, use_all=True, reference_count=reference_count)
        self.path = None if path is None else data_path(path, "game24")

    def _generate(self) -> dict[str, list[Problem]]:
        if self.path is None:
            return super()._generate()
        file = self.path if self.path.suffix == ".csv" else self.path / "24.csv"
        if not file.is_file():
            raise FileNotFoundError(f"task.path: game24 file {file} does not exist")
        tot, rest = [], []
        with file.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), 2):
                try:
                    rank, numbers = int(row["Rank"]), [int(n) for n in row["Puzzles"].split()]
                    if len(numbers) != 4:
                        raise ValueError("expected 4 numbers")
                except (KeyError, TypeError, ValueError, AttributeError) as err:
                    raise ValueError(f"{file}:{line}: malformed puzzle row ({err})") from None
                (tot if rank in TOT_RANKS else rest).append(self.make_problem(f"game24-{rank:04d}", numbers, 24))
        return {"test": tot, "train": rest}
