"""Canonical form of an arithmetic expression, so that rewritings count as one solution.

Two expressions are *the same solution* when they have equal canonical forms. The form
flattens each maximal run of `+`/`-` (and unary minus) into a signed multiset of terms
and each maximal run of `*`/`/` into a multiset of factors with exponent +1 or -1, then
sorts each multiset. Hence commutativity and associativity, including the signed kind,
are normalised away:

    6 * 4 == 4 * 6,   (a + b) + c == a + (b + c) == c + b + a,
    a - (b - c) == a + c - b,   a / (b / c) == a * c / b,   (a / b) / c == a / (b * c)

while distributivity is not (`a * (b + c)` and `a * b + a * c` stay different), nor are
identities (`x * 1` and `x / 1` are different solutions), nor are equal values reached
through different numbers.

The canonical text is itself a valid expression with the same value and literals:
positive terms come before negative ones and numerators before denominators, so when all
original subresults are positive, every subresult of the canonical text is positive too
(and integral when the original ones were) -- it can be replayed as Countdown steps.
"""

from __future__ import annotations

from tasks.expr import BinOp, Neg, Node, Num, format_number, parse


def canonical(node: Node) -> str:
    """The canonical text of an expression tree (see module docstring)."""
    if isinstance(node, Num):
        return _number(node)
    if isinstance(node, Neg) or node.op in "+-":
        terms: list[tuple[int, Node]] = []
        _signed(node, 1, "+-", terms)
        pos = sorted((n for s, n in terms if s > 0), key=_order)
        neg = sorted((n for s, n in terms if s < 0), key=_order)
        text = " + ".join(_wrap(n, "+") for n in pos)
        for n in neg:
            text = f"{text} - {_wrap(n, '-')}" if text else _negated(n)
        return text
    factors: list[tuple[int, Node]] = []
    _signed(node, 1, "*/", factors)
    num = sorted((n for s, n in factors if s > 0), key=_order)
    den = sorted((n for s, n in factors if s < 0), key=_order)
    return " / ".join([" * ".join(_wrap(n, "*") for n in num)] + [_wrap(n, "/") for n in den])


def canonical_text(text: str) -> str | None:
    """The canonical form of an expression given as text, or None if it does not parse."""
    node = parse(text)
    return None if node is None else canonical(node)


def _signed(node: Node, sign: int, ops: str, out: list[tuple[int, Node]]) -> None:
    """Collect the operands of the maximal `ops` run rooted at `node` with their signs."""
    if ops == "+-" and isinstance(node, Neg):
        _signed(node.operand, -sign, ops, out)
    elif isinstance(node, BinOp) and node.op in ops:
        _signed(node.left, sign, ops, out)
        _signed(node.right, sign if node.op == ops[0] else -sign, ops, out)
    else:
        out.append((sign, node))


def _wrap(node: Node, context: str) -> str:
    """Canonical text of an operand, parenthesised when it is a sum inside a product."""
    text = canonical(node)
    is_sum = isinstance(node, Neg) or isinstance(node, BinOp) and node.op in "+-"
    return f"({text})" if context in "*/" and is_sum else text


def _negated(node: Node) -> str:
    text = canonical(node)
    return f"-{text}" if isinstance(node, Num) else f"-({text})"


def _order(node: Node) -> tuple[int, object, str]:
    """Numbers first, largest first; then compound operands by their text."""
    if isinstance(node, Num):
        return (0, -node.value, "")
    return (1, 0, canonical(node))


def _number(node: Num) -> str:
    text = format_number(node.value)
    return f"({text})" if "/" in text or node.value < 0 else text
