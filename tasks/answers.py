"""Numeric answers out of free-form model text, and numeric comparison (never eval).

The rule, in order:
1. An explicit answer marker wins; the LAST marker in the text counts. Markers:
   `\\boxed{...}`, `#### ...`, `answer is ...`, `answer: ...` (case-insensitive); the
   answer is the first number after the marker.
2. Otherwise the last number in the text.

A number is ASCII digits with optional sign, `$`, thousands commas (`1,234`), decimals
(`0.75`) or a fraction (`3/4`); trailing units or punctuation are ignored (`18 dollars.`).
Numbers longer than `MAX_DIGITS` digits are not numbers (they are never a real answer and
would cost time); non-ASCII digits are not read. Only the last `MAX_TEXT` characters of a
text are read (the answer comes last; a 1 MB string would otherwise cost a second).
Returns None when no number is found.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_DIGITS = 30
MAX_TEXT = 10_000
REL_TOL = 1e-6  # relative tolerance of `same_number`

_NUMBER = re.compile(
    r"(?<![\w.])(-)?\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\s?/\s?(\d+))?(?!\d)", re.ASCII
)
_PARTIAL_TOKEN = re.compile(r"^\S*")
_MARKER = re.compile(r"\\boxed\{|####|answer\s+is\s*:?|answer\s*:", re.IGNORECASE | re.ASCII)


def parse_number(text: str) -> Fraction | None:
    """The number a whole token such as `1,234`, `-0.5`, `$18` or `3/4` denotes, else None."""
    match = _NUMBER.fullmatch(text.strip().rstrip(".")) if isinstance(text, str) and len(text) < 100 else None
    return None if match is None else _value(match)


def extract_number(text: str) -> Fraction | None:
    """The answer a model's text gives, by the rule in the module docstring."""
    if not isinstance(text, str) or not text:
        return None
    if len(text) > MAX_TEXT:
        text = _PARTIAL_TOKEN.sub("", text[-MAX_TEXT:], count=1)  # the cut may split a number
    markers = list(_MARKER.finditer(text))
    if markers:
        start = markers[-1].end()
        value = first_number(text[start : start + 200])
        if value is not None:
            return value
    last = None
    for match in _NUMBER.finditer(text):
        value = _value(match)
        if value is not None:
            last = value
    return last


def first_number(text: str) -> Fraction | None:
    """The first number in `text` (e.g. the result after a step's `=`), else None."""
    for match in _NUMBER.finditer(text):
        value = _value(match)
        if value is not None:
            return value
    return None


def same_number(a: Fraction | float | int | None, b: Fraction | float | int | None, rel_tol: float = REL_TOL) -> bool:
    """Equal within `rel_tol` relative (and 1e-9 absolute) tolerance; None equals nothing."""
    if a is None or b is None:
        return False
    a, b = Fraction(a), Fraction(b)
    return a == b or abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(1, 10**9))


def _value(match: re.Match[str]) -> Fraction | None:
    sign, number, denominator = match.groups()
    digits = number.replace(",", "")
    if len(digits) > MAX_DIGITS or (denominator and len(denominator) > MAX_DIGITS):
        return None
    value = Fraction(digits)
    if denominator:
        if int(denominator) == 0:
            return None
        value /= int(denominator)
    return -value if sign else value
