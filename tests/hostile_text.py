"""Hostile model output and every verifier entry point of every task, shared by the fuzz
test (`test_verifier_fuzz.py`) and the benchmark (`benchmarks/fuzz_verifiers.py`).

A policy writes arbitrary text, so each function here must return a value (a reward, an
answer, or None for "invalid") for ANY string, in bounded time, and never raise: one
exception kills a training run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.answers import extract_number, parse_number
from tasks.arith import Arith
from tasks.base import MAX_STEPS, Problem, Task
from tasks.canonical import canonical_text
from tasks.countdown import Countdown
from tasks.expr import evaluate
from tasks.game24 import Game24
from tasks.gsm8k import GSM8K
from tasks.svamp import SVAMP

GSM8K_ROW = {"question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
             "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72 clips.\n#### 72"}
SVAMP_ROW = {"ID": "chal-1", "Body": "Ed has 5 apples.", "Question": "He eats 2. How many are left?",
             "Equation": "( 5.0 - 2.0 )", "Answer": 3.0}

ZERO_DIVISORS = [
    "6 / 0 = 6 (left: 6/0 5)", "6/0 + 1 = 7 (left: 7)", "1 + 6/0 = 7 (left: 7)", "1 + 2 = 6/0 (left: 6/0)",
    "6 * 4 = 24 (left: 3 1/0 24)", "0/0 - 0/0 = 0/0 (left: 0/0)", "answer: 1/0", "answer: 6 / (4 - 4)",
    "answer: 3/0 * 4", "7 / 0 = 0", "answer: 1/0", "The answer is 1/0.", "#### 5/0", "\\boxed{0/0}",
]
UNICODE = [
    "\u0667 - \u0661 = \u0666 (left: \u0666)", "\u0667 - \u0661 = \u0666", "answer: \u0666",
    "answer: \u0663 * \u0664", "The answer is \u0667\u0662.", "\uff11\uff12 + \uff13 = \uff11\uff15",
    "6 \u2212 1 = 5 (left: 5)", "answer: \u22123", "The answer is \u22125.", "\u00bd + \u00bd = 1",
    "answer: \u0000 6 * 4", "6 * 4\u0000= 24 (left: 24)", "\u0000" * 1000, "\ud7ff\ufffd\U0001f600 42",
]
NUMERIC_WORDS = [
    "answer: nan", "answer: inf", "The answer is -inf.", "The answer is NaN", "answer: infinity",
    "nan + 1 = nan (left: nan)", "1e308 * 1e308 = inf", "answer: 1e999", "answer: 9**9**9", "answer: 10**10**10",
    "answer: " + "9" * 400, "The answer is " + "9" * 400 + ".", "answer: 2 ** 100000", "answer: 1_000",
    "answer: 0x1f", "answer: 1j", "answer: (1/3)", "The answer is 1e-400",
]
NESTING = [
    "answer: " + "(" * 10_000 + "1" + ")" * 10_000, "answer: " + "-" * 10_000 + "1",
    "answer: " + "1 + " * 5_000 + "1", "The answer is " + "(" * 50_000, "[" * 100_000, "\\boxed{" * 20_000,
    "answer: " + "((" * 40 + "1" + "))" * 40,
]
STRUCTURE = [
    "", "\n", "answer:", "answer: ", "answer:\n" * 100, "1 + 2 = 3 (left:)", "1 + 2 = 3 (left: )",
    "3 + 4 = 7 (left: 7)\nanswer: 3 + 4\n", "2 + 3 = 5\nanswer: 5\n", "The answer is 72.\n",
    "answer: 6 * 4\nanswer: 1/0\n", "#### ####", "answer is answer is answer is",
]
HUGE = [
    "\n" * 10_000_000, "1" * 1_000_000, "x" * 1_000_000 + " 42", "answer: " + "1" * 1_000_000,
    "1,000," * 200_000, "7 + 3 = 10 (left: " + "1 " * 500_000 + ")", "The answer is 5.\n" * 60_000,
    ("1/0 " * 250_000) + "\n", "= 1 " * 250_000, " " * 10_000_000,
]


#: Pieces of the tasks' trace formats that random hostile strings are assembled from.
PIECES = [
    "0", "1", "6", "24", "99", "0/0", "6/0", "3/4", "1/3", "/", "*", "+", "-", "=", " = ", " ", " ", "\n", "\n",
    "(left: ", "(left:", ")", "(", "answer:", "answer: ", "The answer is ", "####", "\\boxed{", "}", ".", ",",
    "\u0667", "\u0661", "\uff11", "\u2212", "\u00bd", "\u0000", "nan", "inf", "e", "**", "9" * 40, "1" * 14,
    "Chain: ", "<<", ">>", "$", "x", "\t", "\u200b", "\U0001f600", "\ud800", "3 + 4 = 7 (left: 7)\n",
]


def mutate(trace: str, pieces: list[str], positions: list[float]) -> str:
    """`trace` with `pieces[i]` written over it at fraction `positions[i]` of its length:
    text that passes a verifier's first checks and breaks later ones."""
    for piece, at in zip(pieces, positions):
        cut = int(at * len(trace))
        trace = trace[:cut] + piece + trace[cut + len(piece) // 2 :]
    return trace


def hand_corpus() -> list[str]:
    """Zero divisors in every position, unicode digits and minus signs, null bytes, NaN/inf
    words, huge exponents, deep nesting, and 1 MB / 10 MB lines; each also after a legal step."""
    base = ZERO_DIVISORS + UNICODE + NUMERIC_WORDS + NESTING + STRUCTURE
    return base + ["3 + 4 = 7 (left: 7)\n" + t for t in base] + HUGE


def build_tasks(folder: Path, per_task: int = 2) -> list[tuple[Task, list[Problem]]]:
    """Every task class with `per_task` real problems (word problems from small files
    written into `folder`, so the fuzz needs no downloaded data)."""
    (folder / "gsm8k").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (folder / "gsm8k" / f"{split}.jsonl").write_text(json.dumps(GSM8K_ROW) + "\n")
    (folder / "SVAMP.json").write_text(json.dumps([SVAMP_ROW, {**SVAMP_ROW, "ID": "chal-2"}]))
    tasks: list[Task] = [
        Countdown(3, 4, (1, 9), (2, 40), train_size=3, test_size=2),
        Countdown(3, 4, (1, 9), (2, 40), train_size=3, test_size=2, allow_fractions=True, use_all=True),
        Game24(train_size=2, test_size=1), Arith(train_size=3, test_size=1),
        GSM8K(path=str(folder / "gsm8k")), SVAMP(str(folder / "SVAMP.json"), train_size=1),
    ]
    return [(task, task.problems("train")[:per_task]) for task in tasks]


def verifier_calls(task: Task, problem: Problem) -> list[tuple[str, Callable[[str], object]]]:
    """(name, function of one string) for every verifier entry point of `task`."""
    calls: list[tuple[str, Callable[[str], object]]] = [
        ("extract_answer", task.extract_answer),
        ("check_answer", lambda s: task.check_answer(problem, s)),
        ("reward", lambda s: task.reward(problem, s)),
        ("step_reward", lambda s: task.step_reward(problem, "", s)),
        ("step_reward_after", lambda s: task.step_reward(problem, task.prompt(problem) + s, "answer: 1\n")),
        ("split_steps", task.split_steps),
        ("solution_key", lambda s: task.solution_key(problem, s)),
        ("is_final", task.is_final),
    ]
    if hasattr(task, "descriptor"):
        calls.append(("descriptor", lambda s: task.descriptor(problem, s)))
    return calls


LIBRARY_CALLS: list[tuple[str, Callable[[str], object]]] = [
    ("extract_number", extract_number), ("parse_number", parse_number), ("evaluate", evaluate),
    ("canonical_text", canonical_text),
]


def check_result(name: str, text: str, value: object) -> None:
    """What a total verifier's answer must look like (beyond not raising)."""
    if name in ("reward", "step_reward", "step_reward_after"):
        assert value in (0.0, 1.0) or value is None, (name, value)
    elif name == "split_steps":
        assert "".join(value) == text and len(value) <= MAX_STEPS, name
    elif name == "extract_answer":
        assert value is None or isinstance(value, str), (name, value)


Outcome = tuple[str, str, str, float, "BaseException | None"]  # task, function, text, seconds, escape


def run_all(pairs: list[tuple[Task, list[Problem]]], texts: Iterator[str]) -> Iterator[Outcome]:
    """For each text and each verifier: (task, function, text, seconds, escaped exception or None)."""
    for text in texts:
        calls = [("answers", name, fn) for name, fn in LIBRARY_CALLS]
        calls += [(task.name, name, fn) for task, problems in pairs for problem in problems
                  for name, fn in verifier_calls(task, problem)]
        for task_name, name, fn in calls:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                check_result(name, text, fn(text))
            except Exception as err:  # noqa: BLE001 - counting escapes is the point
                error = err
            yield task_name, name, text, time.perf_counter() - start, error
