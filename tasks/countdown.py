"""Countdown: reach a target from a few numbers with + - * /, each number at most once.

This file is the one place the Countdown trace format is defined. It is kept compact
because the default policy is a ~1M-parameter character-level model that must learn it:

    prompt   Numbers: 3 6 4 1\\nTarget: 24\\n
    step     6 * 4 = 24 (left: 3 1 24)\\n
    final    answer: 6 * 4\\n

A step `A op B = C (left: ...)` combines two numbers available at that point (A first,
then B, each taken once) into C, and lists the numbers available afterwards: the unused
ones in their previous order, then C (the check is on the multiset, not the order).
Numbers in steps are integers, or `p/q` when fractions are allowed, in ASCII digits (as
in `tasks.answers`; `p/0` makes a step illegal, never an error). The final step gives
an expression over the ORIGINAL numbers; the trace ends there (later text is ignored).

Rules: every result must be a positive integer (positive rational with
`allow_fractions`); zero and negative results are illegal, so division by zero cannot
arise from legal steps. With `use_all`, the answer must use every number (Game of 24).

Prompt styles (`prompt_style`): `plain` is the prompt above; `fewshot` puts `fewshot_k`
solved train problems (chosen with the task seed) before it, each its plain prompt, its
first reference trace and a blank line -- how a base model that never saw a Countdown
solution (`policy.init: pretrained`) is asked.

Judging: a trace earns reward 1.0 only when every step is legal on the numbers available
at that point (a reused or invented number, wrong arithmetic or a wrong `left` list gives
0), some step's result equals the target, and the answer expression, as written, obeys
the rules and equals the target. `extract_answer` returns the answer's canonical form
(`tasks.canonical`), so rewritings of one solution vote together in maj@k and count as
one solution in `solution_key`, or None when the expression does not evaluate (`1/0`);
`solve` lists solutions in the same form.

Why one file of ~330 lines: format, generator, step checker, answer judge and reference
traces are one definition that must change together; what stands apart already lives
apart (the solver in `tasks.countdown_solver`, the state space in `tasks.state_space`).
"""

from __future__ import annotations

import operator
import random
import re
from collections import Counter
from fractions import Fraction
from functools import cached_property
from typing import Hashable

from tasks.base import Problem, Splits, Task, fewshot_prefix
from tasks.canonical import canonical
from tasks.countdown_solver import reachable, solve
from tasks.expr import BinOp, Neg, Node, evaluate, literals, parse, subresults

_NUM = r"[0-9]{1,13}(?:/[0-9]{1,13})?"  # ASCII digits only, as in tasks.answers
_STEP = re.compile(rf"({_NUM}) ([-+*/]) ({_NUM}) = ({_NUM}) \(left:((?: {_NUM})+)\)")
_ANSWER = "answer:"
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
PROMPT_STYLES = ("plain", "fewshot")
_MAX_LINE = 200  # longer lines are never legal steps; rejected before any regex runs


class Countdown(Task):
    """Seeded, always-solvable Countdown problems with an exhaustive solver and verifiers."""

    name = "countdown"
    step_stop = "\n"
    split_aliases: dict[str, str] = {}  # other names of a split (the Game of 24's "tot")

    def __init__(
        self,
        min_numbers: int = 3,
        max_numbers: int = 4,
        number_range: tuple[int, int] = (1, 20),
        target_range: tuple[int, int] = (10, 100),
        train_size: int = 2000,
        test_size: int = 200,
        seed: int = 0,
        allow_fractions: bool = False,
        use_all: bool = False,
        reference_count: int = 4,
        prompt_style: str = "plain",
        fewshot_k: int = 3,
    ) -> None:
        number_range, target_range = tuple(number_range), tuple(target_range)
        _require(2 <= min_numbers <= max_numbers <= 6, "min_numbers/max_numbers", "need 2 <= min_numbers <= max_numbers <= 6")
        for key, (lo, hi) in (("number_range", number_range), ("target_range", target_range)):
            _require(1 <= lo <= hi, key, f"need 1 <= lo <= hi, got {[lo, hi]}")
        _require(train_size >= 0 and test_size >= 0, "train_size/test_size", "must be >= 0")
        _require(reference_count >= 1, "reference_count", "must be >= 1")
        _require(prompt_style in PROMPT_STYLES, "prompt_style", f"{prompt_style!r} is not one of {PROMPT_STYLES}")
        _require(fewshot_k >= 0, "fewshot_k", "must be >= 0")
        self.min_numbers, self.max_numbers = min_numbers, max_numbers
        self.number_range, self.target_range = number_range, target_range
        self.sizes = {"test": test_size, "train": train_size}
        self.seed = seed
        self.allow_fractions, self.use_all = allow_fractions, use_all
        self.reference_count = reference_count
        self.prompt_style, self.fewshot_k = prompt_style, fewshot_k
        self._splits = Splits(self.name, ("train", "test"), lambda s: self._split_lists[s], self.split_aliases)

    # ---- problems -------------------------------------------------------------------

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The split in its fixed order; with `limit`, a `seed`-chosen subset (order kept)."""
        return self._splits.get(split, limit, seed)

    @cached_property
    def _split_lists(self) -> dict[str, list[Problem]]:
        return self._generate()

    def _generate(self) -> dict[str, list[Problem]]:
        """Test problems first, then train, so the test set does not depend on train_size;
        a (numbers multiset, target) pair appears at most once across both."""
        rng = random.Random(self.seed)
        wanted = self.sizes["test"] + self.sizes["train"]
        seen: set[tuple[tuple[int, ...], int]] = set()
        drawn: list[tuple[list[int], int]] = []
        attempts = 0
        while len(drawn) < wanted:
            attempts += 1
            if attempts > 50 * wanted + 1000:
                raise ValueError(
                    f"task {self.name}: only {len(drawn)} distinct solvable problems found for "
                    f"train_size + test_size = {wanted}; widen number_range or target_range"
                )
            numbers = [rng.randint(*self.number_range) for _ in range(rng.randint(self.min_numbers, self.max_numbers))]
            lo, hi = self.target_range
            targets = sorted(
                int(v) for v in self._reachable(numbers) if v.denominator == 1 and lo <= v <= hi and v not in numbers
            )
            if not targets:
                continue
            target = rng.choice(targets)
            key = (tuple(sorted(numbers)), target)
            if key not in seen:
                seen.add(key)
                drawn.append((numbers, target))
        test, train = drawn[: self.sizes["test"]], drawn[self.sizes["test"] :]
        return {split: [self.make_problem(f"{self.name}-{split}-{i:05d}", n, t) for i, (n, t) in enumerate(rows)]
                for split, rows in (("train", train), ("test", test))}

    def _reachable(self, numbers: list[int]) -> set[Fraction]:
        if not self.use_all:
            return reachable(numbers, self.allow_fractions)
        return {Fraction(t) for t in range(self.target_range[0], self.target_range[1] + 1)
                if solve(numbers, t, self.allow_fractions, use_all=True)}

    def make_problem(self, problem_id: str, numbers: list[int], target: int) -> Problem:
        question = f"Numbers: {' '.join(map(str, numbers))}\nTarget: {target}"
        return Problem(problem_id, question, str(target), {"numbers": list(numbers), "target": target})

    def prompt(self, problem: Problem) -> str:
        plain = problem.question + "\n"
        return self._fewshot + plain if self.prompt_style == "fewshot" else plain

    @cached_property
    def _fewshot(self) -> str:
        return fewshot_prefix(self, self.fewshot_k, f"{self.seed}:fewshot", lambda p: p.question + "\n")

    # ---- solutions --------------------------------------------------------------------

    def solve(self, numbers: list[int], target: int) -> list[str]:
        """All distinct solutions (canonical expressions; see `tasks.canonical`)."""
        return solve(numbers, target, self.allow_fractions, self.use_all)

    def reference_traces(self, problem: Problem) -> list[str]:
        """Up to `reference_count` traces, one per solver solution, in an order seeded by
        the task seed and the problem id; each replays the canonical expression bottom-up."""
        solutions = self.solve(problem.meta["numbers"], problem.meta["target"])
        random.Random(f"{self.seed}:{problem.id}").shuffle(solutions)
        return [self._trace(problem, s) for s in solutions[: self.reference_count]]

    def _trace(self, problem: Problem, expression: str) -> str:
        available = [Fraction(n) for n in problem.meta["numbers"]]
        lines: list[str] = []

        def replay(node: Node) -> Fraction:
            if not isinstance(node, BinOp):
                return node.value
            a, b = replay(node.left), replay(node.right)
            result = _APPLY[node.op](a, b)
            available.remove(a)
            available.remove(b)
            available.append(result)
            left = " ".join(_number_text(v) for v in available)
            lines.append(f"{_number_text(a)} {node.op} {_number_text(b)} = {_number_text(result)} (left: {left})\n")
            return result

        node = parse(expression)
        replay(node)
        return "".join(lines) + f"{_ANSWER} {expression}\n"

    # ---- judging ----------------------------------------------------------------------

    def is_final(self, step: str) -> bool:
        return step.lstrip().startswith(_ANSWER)

    def extract_answer(self, text: str) -> str | None:
        """The canonical answer expression; None without one, or when it does not evaluate
        (`1/0`, a value beyond `tasks.expr.Limits`)."""
        node = self._answer_node(text)
        return None if node is None or evaluate(node) is None else canonical(node)

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        node = parse(answer) if isinstance(answer, str) else None
        return node is not None and self._answer_ok(problem, node)

    def reward(self, problem: Problem, text: str) -> float:
        state = self._initial(problem)
        for step in self.split_steps(text):
            if self.is_final(step):
                return self._final_step_reward(problem, state, step)
            state = self._apply(problem, state, step)
            if state is None:
                return 0.0
        return 0.0

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float:
        """1.0 if `step` is legal after `prefix` (the trace so far; a leading prompt is
        dropped); a final step is legal when it completes a correct trace. An illegal
        prefix makes every step 0.0."""
        prompt = self.prompt(problem)
        if prefix.startswith(prompt):
            prefix = prefix[len(prompt) :]
        state = self._initial(problem)
        for previous in self.split_steps(prefix):
            if self.is_final(previous):
                return 0.0
            state = self._apply(problem, state, previous)
            if state is None:
                return 0.0
        if self.is_final(step):
            return self._final_step_reward(problem, state, step)
        return float(self._apply(problem, state, step) is not None)

    def solution_key(self, problem: Problem, text: str) -> str:
        """The answer's canonical expression, comparable with `solve`'s list."""
        return self.extract_answer(text) or ""

    def solutions(self, problem: Problem) -> list[str]:
        """`solve`'s list: the same canonical form as `solution_key`."""
        return self.solve(problem.meta["numbers"], problem.meta["target"])

    def descriptor(self, problem: Problem, text: str) -> Hashable:
        """(sorted operators used, shape of the canonical answer with numbers as `n`);
        `((), "")` for a trace without a parseable answer. For MAP-Elites niches."""
        answer = self.extract_answer(text)
        if answer is None:
            return ((), "")
        ops = tuple(sorted(ch for ch in answer if ch in "+-*/"))
        return ops, re.sub(r"\d+", "n", answer)

    # ---- internals --------------------------------------------------------------------

    def _initial(self, problem: Problem) -> tuple[list[Fraction], bool]:
        """The state before any step: available numbers, and whether the target was reached."""
        return [Fraction(n) for n in problem.meta["numbers"]], False

    def _apply(self, problem: Problem, state: tuple[list[Fraction], bool], step: str) -> tuple[list[Fraction], bool] | None:
        """The state after a legal step, or None if the step is illegal."""
        if len(step) > _MAX_LINE:
            return None
        match = _STEP.fullmatch(step.strip())
        if match is None:
            return None
        a, op, b, c, left = match.groups()
        a, b, c = _step_number(a), _step_number(b), _step_number(c)
        listed = [_step_number(x) for x in left.split()]
        if None in (a, b, c) or None in listed:
            return None
        available = list(state[0])
        for operand in (a, b):
            if operand not in available:
                return None
            available.remove(operand)
        if op == "/" and b == 0:
            return None
        result = _APPLY[op](a, b)
        if result != c or not self._legal(result):
            return None
        available.append(result)
        if Counter(listed) != Counter(available):
            return None
        return available, state[1] or result == problem.meta["target"]

    def _final_step_reward(self, problem: Problem, state: tuple[list[Fraction], bool], step: str) -> float:
        node = self._answer_node(step)
        return float(state[1] and node is not None and self._answer_ok(problem, node))

    def _answer_node(self, text: str) -> Node | None:
        for step in self.split_steps(text):
            if self.is_final(step):
                return parse(step.strip()[len(_ANSWER) :])
        return None

    def _answer_ok(self, problem: Problem, node: Node) -> bool:
        used = literals(node)
        numbers = Counter(Fraction(n) for n in problem.meta["numbers"])
        if used is None or used - numbers or (self.use_all and used != numbers) or _has_negation(node):
            return False
        results = subresults(node)
        if not results or not all(self._legal(r) for r in results):
            return False
        return results[-1] == problem.meta["target"]

    def _legal(self, value: Fraction) -> bool:
        return value > 0 and (self.allow_fractions or value.denominator == 1)

    def state_space(self) -> "CountdownSpace":  # noqa: F821 (imported in the body: tasks.state_space imports this module)
        """The formal state space (numbers left, target) a guide network searches (`search=xot`)."""
        from tasks.state_space import CountdownSpace

        return CountdownSpace(self)


def _step_number(text: str) -> Fraction | None:
    """A number as a step writes it (`12`, `24/5`; ASCII digits), None for a zero denominator."""
    numerator, _, denominator = text.partition("/")
    return None if denominator and int(denominator) == 0 else Fraction(int(numerator), int(denominator or 1))


def _number_text(value: Fraction) -> str:
    """How a step writes a number: `12`, or `24/5` when fractions are allowed."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _has_negation(node: Node) -> bool:
    """Unary minus is not a Countdown operation (it would turn 3 into -3 for free)."""
    if isinstance(node, Neg):
        return True
    return isinstance(node, BinOp) and (_has_negation(node.left) or _has_negation(node.right))


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ValueError(f"countdown config {key}: {why}")
