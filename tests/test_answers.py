"""Answer extraction from what real models write, and hostile text."""

from fractions import Fraction

import pytest

from tasks.answers import extract_number, format_number, parse_number, same_number


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
    assert format_number(Fraction(3, 4)) == "0.75" and format_number(Fraction(2, 3)) == "2/3"
    assert format_number(Fraction(18)) == "18"
    assert parse_number("1,234") == 1234 and parse_number("12 apples") is None
