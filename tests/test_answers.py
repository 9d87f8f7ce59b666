"""Answer extraction from what real models write, and hostile text."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.answers import MAX_TEXT, extract_number, parse_number, same_number
from tasks.expr import evaluate, format_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 1,234.", 1234), ("$18", 18), ("#### 18", 18), ("18 dollars", 18),
        ("so \\boxed{18} is it", 18), ("3/4", Fraction(3, 4)), ("It is 0.75 of the cake", Fraction(3, 4)),
        ("First 3 + 4 = 7, then 7 * 2 = 14. The answer is 14. Check: 14 / 2 = 7", 14),  # marker wins
        ("He has 5 apples and 7 pears, 12 fruits", 12),  # no marker: last number
        ("The answer is: -3", -3), ("Answer: $1,000,000.50", Fraction(2000001, 2)),
        ("answer is 12 apples, not 13", 12), ("I got 5-3", 3),
    ],
)
def test_extracts_what_models_write(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", None), ("no number here", None), ("9" * 5000, None), ("The answer is " + "9" * 100, None),
        ("\u0663\u0664", None), ("x" * 100_000, None), ("x" * 100_000 + " 42", 42),
        ("The answer is 1/0", None), (None, None), ("The answer is " + "(" * 50_000, None),
    ],
)
def test_hostile_text(text, expected):
    assert extract_number(text) == expected


def test_comparison_and_formatting():
    assert same_number(Fraction(1, 3), 0.3333333334) and not same_number(18, 18.5) and not same_number(None, 1)
    assert parse_number("1,234") == 1234 and parse_number("12 apples") is None


@pytest.mark.parametrize(
    "value, text",
    [
        (Fraction(18), "18"), (Fraction(-3), "-3"), (Fraction(3, 4), "0.75"), (Fraction(-1, 2), "-0.5"),
        (Fraction(2, 3), "2/3"), (Fraction(-7, 3), "-7/3"), (Fraction(1, 2**12), "0.000244140625"),
        (Fraction(1, 2**13), "1/8192"),  # a 13th decimal place: no literal tasks.expr parses has one
        (Fraction(49382716049382716049, 4), "12345679012345679012.25"),  # exact where a float rounds
    ],
)
def test_format_number_is_the_one_canonical_text(value, text):
    """Word-problem answers (maj@k votes, GSM8K intermediates, SVAMP golds) and Countdown's
    canonical expressions all write numbers with this one function."""
    assert format_number(value) == text


@given(st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**5))  # within tasks.expr.Limits
def test_format_number_reads_back_exactly(value):
    text = format_number(value)
    assert parse_number(text) == value and evaluate(text) == value


def test_long_text_is_read_from_its_end():
    assert extract_number("7 " * MAX_TEXT + "The answer is 9.") == 9
    assert extract_number("The answer is 9. " + "x" * MAX_TEXT) is None  # the marker is beyond the window
    assert extract_number("1" * (MAX_TEXT + 5)) is None  # a cut number is not read as a shorter one
    assert extract_number("12345 " * 3000 + "6789") == 6789
