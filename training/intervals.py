"""95% t intervals over seeds, the statistics behind the fidelity and strategy verdicts.

Seeds are the unit of replication: each run gives one number (its final maj@1, its gain
over the base, ...), and an interval says how far the mean over seeds could be from the
mean over infinitely many seeds. `over_seeds` is the one-sample t interval (for a level, or
for per-seed differences within a run, which is the paired t test); `welch` is the interval
of a difference of two cells' means without assuming equal variances
(`scipy.stats.ttest_ind(..., equal_var=False)`). Fewer than two values on a side give no
interval (bounds None), never a zero-width one; identical values do give a zero-width one
(the t interval's limit), which is what scipy returns.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval; `low`/`high` None when the sample gives no interval."""

    mean: float
    low: float | None
    high: float | None
    n: int  # values behind the mean (the smaller side for a difference)

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def half(self) -> float | None:
        return (self.high - self.low) / 2 if self.known else None

    def contains(self, x: float) -> bool:
        return self.known and self.low <= x <= self.high

    def text(self, signed: bool = False) -> str:
        """`0.120 [0.050, 0.190]`, or `0.120 [n/a: 1 seed]`."""
        fmt = "{:+.3f}" if signed else "{:.3f}"
        if not self.known:
            return f"{fmt.format(self.mean)} [n/a: {self.n} seed{'s' if self.n != 1 else ''}]"
        return f"{fmt.format(self.mean)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def _quiet(test):  # noqa: ANN001, ANN202 - wraps a scipy test call
    """scipy warns of precision loss on (nearly) identical values; the interval it returns is
    still the right one (zero width), so the warning would only alarm the reader."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss", category=RuntimeWarning)
        return test().confidence_interval(CONFIDENCE)


def over_seeds(values: Sequence[float]) -> Interval:
    """Mean over seeds and its one-sample t interval."""
    if not values:
        raise ValueError("over_seeds: no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, None, None, len(values))
    ci = _quiet(lambda: stats.ttest_1samp(list(values), 0.0))
    return Interval(mean, float(ci.low), float(ci.high), len(values))


def welch(a: Sequence[float], b: Sequence[float]) -> Interval:
    """mean(a) − mean(b) and its Welch t interval."""
    if not a or not b:
        raise ValueError("welch: an empty side")
    mean = statistics.fmean(a) - statistics.fmean(b)
    n = min(len(a), len(b))
    if n < 2:
        return Interval(mean, None, None, n)
    ci = _quiet(lambda: stats.ttest_ind(list(a), list(b), equal_var=False))
    return Interval(mean, float(ci.low), float(ci.high), n)
