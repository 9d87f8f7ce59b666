"""Exhaustive search over Countdown combinations: which targets are reachable, and every
distinct way to reach one.

The rules (shared with `tasks.countdown`): repeatedly replace two available numbers a, b by
a + b, a * b, a - b or a / b; every result must be positive, and an integer unless
fractions are allowed (the Game of 24 allows them). Each number is used at most once;
all must be used only when `use_all` is set (the Game of 24 again). A solution is an expression that combines at least two numbers;
solutions are distinct when their `tasks.canonical` forms differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Union

from tasks.canonical import canonical
from tasks.expr import BinOp, Node, Num


Value = Union[int, Fraction]  # plain ints when fractions are not allowed: ~10x faster


def combine(a: Value, b: Value, allow_fractions: bool) -> Iterator[tuple[str, bool, Value]]:
    """Every legal (op, swapped, result) for the pair: `swapped` means the step is `b op a`.
    Commutative ops appear once; subtraction and division only in directions that keep the
    result positive (and integral unless `allow_fractions`, in which case a and b must be
    Fractions)."""
    yield "+", False, a + b
    yield "*", False, a * b
    if a != b:
        yield ("-", False, a - b) if a > b else ("-", True, b - a)
    for swapped, (x, y) in ((False, (a, b)), (True, (b, a))):
        if swapped and a == b:
            break
        if allow_fractions:
            yield "/", swapped, x / y
        elif x % y == 0:
            yield "/", swapped, x // y


def reachable(numbers: list[int], allow_fractions: bool = False) -> set[Fraction]:
    """Every value an expression over two or more of `numbers` can take under the rules."""
    values: set[Value] = set()
    seen: set[tuple[Value, ...]] = set()

    def visit(state: tuple[Value, ...]) -> None:
        if state in seen:
            return
        seen.add(state)
        for i in range(len(state)):
            for j in range(i + 1, len(state)):
                rest = state[:i] + state[i + 1 : j] + state[j + 1 :]
                for _, _, result in combine(state[i], state[j], allow_fractions):
                    values.add(result)
                    visit(tuple(sorted(rest + (result,))))

    visit(tuple(sorted(_value(n, allow_fractions) for n in numbers)))
    return {Fraction(v) for v in values}


def solve(numbers: list[int], target: int, allow_fractions: bool = False, use_all: bool = False) -> list[str]:
    """All distinct solutions as canonical expressions, shortest first, then alphabetical."""
    found: set[str] = set()

    def visit(items: list[tuple[Value, Node]]) -> None:
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, x), (b, y) = items[i], items[j]
                rest = items[:i] + items[i + 1 : j] + items[j + 1 :]
                for op, swapped, result in combine(a, b, allow_fractions):
                    node = BinOp(op, y, x) if swapped else BinOp(op, x, y)
                    if result == target and not (use_all and rest):
                        found.add(canonical(node))
                    if rest:
                        visit(rest + [(result, node)])

    visit([(_value(n, allow_fractions), Num(Fraction(n))) for n in numbers])
    return sorted(found, key=lambda s: (len(s), s))


def _value(n: int, allow_fractions: bool) -> Value:
    return Fraction(n) if allow_fractions else int(n)
