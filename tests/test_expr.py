"""The safe evaluator: exact on well-formed input, a clean None on everything else."""

from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.canonical import canonical, canonical_text
from tasks.expr import Limits, evaluate, literals, parse, render, subresults

# ---- random well-formed expressions against a reference computed from the tree ---------

numbers = st.integers(0, 10**4).map(str) | st.tuples(st.integers(0, 999), st.integers(0, 99)).map(
    lambda p: f"{p[0]}.{p[1]:02d}"
)


def _trees():
    """(text, exact value or None on division by zero) built bottom-up."""
    leaf = numbers.map(lambda s: (s, Fraction(s)))

    def extend(children):
        def binop(args):
            (ta, va), op, (tb, vb) = args
            if va is None or vb is None:
                value = None
            elif op == "/":
                value = None if vb == 0 else va / vb
            else:
                value = {"+": va + vb, "-": va - vb, "*": va * vb}[op]
            return f"({ta} {op} {tb})", value

        unary = children.map(lambda c: (f"-({c[0]})", None if c[1] is None else -c[1]))
        return st.tuples(children, st.sampled_from("+-*/"), children).map(binop) | unary

    return st.recursive(leaf, extend, max_leaves=12)


GENEROUS = Limits(max_chars=2000, max_abs=10**40, max_denominator=10**40)


@settings(max_examples=300, deadline=None)
@given(_trees())
def test_random_expressions_evaluate_exactly(case):
    text, value = case
    assert evaluate(text, GENEROUS) == value


@settings(max_examples=300, deadline=None)
@given(_trees())
def test_render_and_canonical_preserve_value_and_literals(case):
    text, value = case
    node = parse(text, GENEROUS)
    assert node is not None
    assert parse(render(node), GENEROUS) == node
    if value is not None:
        assert evaluate(canonical(node), GENEROUS) == value
        assert literals(canonical(node), GENEROUS) == literals(node)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.text(alphabet="0123456789.+-*/() ejx_", max_size=300))
def test_garbage_never_raises(text):
    result = evaluate(text)
    assert result is None or isinstance(result, Fraction)
    assert literals(text) is None or isinstance(literals(text), Counter)


# ---- hostile and edge inputs -------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "9**9**9", "2**10", "1/0", "(1-1)/(2-2)", "(" * 10_000 + "1" + ")" * 10_000,
        "1" * 1_000_000, "-" * 150 + "1", "x", "abs(-1)", "(1).real", "lambda: 1",
        "__import__('os')", "'12'", "1j", "1e5", "0x10", "1_000", "7 // 2", "7 % 2",
        "", "   ", "1 +", "()", "1 2", "\u0663 + 1", "1;2", "[1]", "1 if 1 else 2",
        "99999999999999 * 99999999999999", "1 / 3 / 7 / 11 / 13 / 17 / 19 / 23 / 29 / 31 / 37 / 41 / 43",
    ],
)
def test_hostile_inputs_are_invalid(text):
    assert evaluate(text) is None


def test_non_strings_are_invalid():
    assert parse(None) is None  # type: ignore[arg-type]
    assert parse(b"1+1") is None  # type: ignore[arg-type]


def test_nesting_and_size_limits():
    assert evaluate("(" * 30 + "1" + ")" * 30) == 1
    assert evaluate("(" * 40 + "1" + ")" * 40) is None
    assert evaluate("+".join(["1"] * 30)) == 30
    assert evaluate("+".join(["1"] * 40)) is None  # a left-leaning chain 39 deep
    deep = Limits(max_chars=1000, max_depth=1000)
    assert evaluate("+".join(["1"] * 64), deep) == 64  # 127 nodes
    assert evaluate("+".join(["1"] * 65), deep) is None  # 129 nodes


def test_decimals_are_exact():
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate(".5 * 4") == 2
    assert evaluate("3.") == 3


def test_literals_and_subresults():
    assert literals("3 * 3 + 4 - -2") == Counter({Fraction(3): 2, Fraction(4): 1, Fraction(2): 1})
    assert literals("x") is None
    assert subresults(parse("(1 + 2) * 4")) == [3, 12]
    assert subresults(parse("1 / (2 - 2)")) is None


@pytest.mark.parametrize(
    "a, b",
    [("6 * 4", "4*6"), ("(1 + 2) + 3", "3 + (2 + 1)"), ("5 - (3 - 1)", "5 + 1 - 3"),
     ("8 / (4 / 2)", "8 * 2 / 4"), ("8 / 4 / 2", "8 / (4 * 2)")],
)
def test_canonical_merges_rewritings(a, b):
    assert canonical_text(a) == canonical_text(b)


@pytest.mark.parametrize("a, b", [("2 * (3 + 4)", "2 * 3 + 2 * 4"), ("6 * 1", "6 / 1"), ("8 - 2", "2 - 8")])
def test_canonical_keeps_different_solutions_apart(a, b):
    assert canonical_text(a) != canonical_text(b)
