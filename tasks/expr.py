"""Safe, exact arithmetic on untrusted text (model output is data, never code).

An expression is parsed with `ast` in "eval" mode and converted to a tiny tree of `Num`,
`Neg` and `BinOp` nodes, accepting only: decimal number literals (`12`, `0.5`, `.5`;
no exponents, underscores, hex or complex), binary `+ - * /`, unary `-` and `+`, and
parentheses. Values are exact `fractions.Fraction`s.

Every entry point returns None for anything it will not evaluate -- a syntax error, a
name, a call, `**`, division by zero, a result beyond `Limits` -- and never raises.
Input is bounded *before* `ast.parse` sees it (length, characters, parenthesis depth),
so hostile text (10 000 nested parentheses, a 1 MB string, `9**9**9`) is rejected in
microseconds instead of exhausting the parser, the stack or memory.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Union


@dataclass(frozen=True)
class Limits:
    """Bounds on what gets evaluated; anything beyond them is invalid (None)."""

    max_chars: int = 200  # input length, checked before parsing
    max_depth: int = 32  # nesting depth of the expression tree (and of parentheses)
    max_nodes: int = 128  # numbers + operators
    max_abs: int = 10**12  # |x| of every literal and intermediate result
    max_denominator: int = 10**12  # denominator of every literal and intermediate result


DEFAULT_LIMITS = Limits()
MAX_DECIMALS = 12  # `format_number` writes p/q beyond this: no literal `parse` accepts has more


@dataclass(frozen=True)
class Num:
    value: Fraction


@dataclass(frozen=True)
class Neg:
    operand: "Node"


@dataclass(frozen=True)
class BinOp:
    op: str  # one of "+", "-", "*", "/"
    left: "Node"
    right: "Node"


Node = Union[Num, Neg, BinOp]

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_ALLOWED = re.compile(r"[0-9.+\-*/() \t]*")
_LITERAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


class _Reject(Exception):
    """Internal: the input is not an expression we evaluate."""


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Node | None:
    """The expression tree of `text`, or None when it is not a bounded arithmetic expression."""
    if not isinstance(text, str) or len(text) > limits.max_chars:
        return None
    text = text.strip()
    if not text or not _ALLOWED.fullmatch(text) or _paren_depth(text) > limits.max_depth:
        return None
    try:
        tree = ast.parse(text, mode="eval")
        budget = [limits.max_nodes]
        return _convert(tree.body, text, limits, 0, budget)
    except (_Reject, SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def evaluate(expr: str | Node, limits: Limits = DEFAULT_LIMITS) -> Fraction | None:
    """The exact value of an expression (text or tree), or None if invalid or out of bounds."""
    node = parse(expr, limits) if isinstance(expr, str) else expr
    if node is None:
        return None
    try:
        return _value(node, limits)
    except (_Reject, ZeroDivisionError):
        return None


def subresults(node: Node, limits: Limits = DEFAULT_LIMITS) -> list[Fraction] | None:
    """The value of every operator node, in evaluation (post-)order; None if any is invalid.
    Lets a task impose rules on intermediate results (e.g. Countdown's positive integers)."""
    out: list[Fraction] = []
    try:
        _value(node, limits, out)
    except (_Reject, ZeroDivisionError):
        return None
    return out


def literals(expr: str | Node, limits: Limits = DEFAULT_LIMITS) -> Counter[Fraction] | None:
    """The multiset of number literals an expression uses (`-3` uses the literal 3)."""
    node = parse(expr, limits) if isinstance(expr, str) else expr
    if node is None:
        return None
    found: Counter[Fraction] = Counter()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Num):
            found[n.value] += 1
        elif isinstance(n, Neg):
            stack.append(n.operand)
        else:
            stack.extend((n.left, n.right))
    return found


def format_number(value: Fraction) -> str:
    """The canonical text of a number, so that equal values get equal text (answers vote
    together in maj@k, solutions compare as strings): `12`, an exact decimal of at most
    `MAX_DECIMALS` places (`0.25`, `-1.5`), else `p/q` (`7/3`). `parse` here and
    `tasks.answers.parse_number` both read it back to exactly `value` (within their limits)."""
    if value.denominator == 1:
        return str(value.numerator)
    places = next((d for d in range(1, MAX_DECIMALS + 1) if 10**d % value.denominator == 0), None)
    if places is None:
        return f"{value.numerator}/{value.denominator}"
    whole, frac = divmod(abs(value.numerator) * 10**places // value.denominator, 10**places)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{places}d}"


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def render(node: Node) -> str:
    """Text that parses back to exactly `node` (minimal parentheses, single spaces)."""
    if isinstance(node, Num):
        text = format_number(node.value)
        return f"({text})" if "/" in text else text
    if isinstance(node, Neg):
        inner = render(node.operand)
        return f"-({inner})" if isinstance(node.operand, BinOp) else f"-{inner}"
    prec = _PREC[node.op]
    left, right = render(node.left), render(node.right)
    if isinstance(node.left, BinOp) and _PREC[node.left.op] < prec:
        left = f"({left})"
    if isinstance(node.right, BinOp) and _PREC[node.right.op] <= prec:
        right = f"({right})"
    return f"{left} {node.op} {right}"


def _paren_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _convert(node: ast.AST, text: str, limits: Limits, depth: int, budget: list[int]) -> Node:
    budget[0] -= 1
    if budget[0] < 0 or depth > limits.max_depth:
        raise _Reject
    if isinstance(node, ast.Constant):
        source = ast.get_source_segment(text, node)
        if type(node.value) not in (int, float) or source is None or not _LITERAL.fullmatch(source):
            raise _Reject
        if len(source) > 40:
            raise _Reject
        value = Fraction(source)
        _check(value, limits)
        return Num(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _convert(node.operand, text, limits, depth + 1, budget)
        return Neg(operand) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _convert(node.left, text, limits, depth + 1, budget)
        right = _convert(node.right, text, limits, depth + 1, budget)
        return BinOp(_OPS[type(node.op)], left, right)
    raise _Reject


def _value(node: Node, limits: Limits, trail: list[Fraction] | None = None) -> Fraction:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Neg):
        return -_value(node.operand, limits, trail)
    a = _value(node.left, limits, trail)
    b = _value(node.right, limits, trail)
    if node.op == "+":
        result = a + b
    elif node.op == "-":
        result = a - b
    elif node.op == "*":
        result = a * b
    else:
        result = a / b
    _check(result, limits)
    if trail is not None:
        trail.append(result)
    return result


def _check(value: Fraction, limits: Limits) -> None:
    if abs(value) > limits.max_abs or value.denominator > limits.max_denominator:
        raise _Reject
