"""Instruments of the RL-for-reasoning literature, as pure functions over sample counts
and solution sets.

* `pass_at_k_curve`: mean unbiased pass@k over problems at k = 1, 2, 4, ... from n
  samples per problem (Chen et al. 2021), the curve Yue et al. (2025) compare between a
  base and an RL-trained model; `curve_band` is its bootstrap confidence band over
  problems (scipy.stats.bootstrap, percentile).
* `crossover_k`: the smallest k at which the base's pass@k reaches the trained model's
  (None if it never does) — Yue et al.'s finding is that such a k exists.
* `coverage`: the mean fraction of each problem's full solution set (canonical forms, as
  an exhaustive solver lists them) found among the correct samples.
* `novel_correct`: the fraction of correct solutions of a kind the SFT data never
  demonstrates (e.g. using an operation no reference trace used): exploration beyond
  what was shown.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np
from scipy.stats import bootstrap

from search.metrics import pass_at_k


def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included when it is not a power of two)."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


def pass_at_k_matrix(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> np.ndarray:
    """[problems, len(ks)] unbiased pass@k of each problem from its (n, correct) counts;
    k above a problem's n is scored at n (what its samples can tell)."""
    return np.array([[pass_at_k(n, c, min(k, n)) if n else 0.0 for k in ks] for n, c in counts])


def pass_at_k_curve(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> list[float]:
    """Mean pass@k over problems, one value per k."""
    return pass_at_k_matrix(counts, ks).mean(axis=0).tolist() if counts else [0.0] * len(ks)


def curve_band(counts: Sequence[tuple[int, int]], ks: Sequence[int], confidence: float = 0.95,
               resamples: int = 1000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Percentile bootstrap band of the pass@k curve, resampling problems."""
    matrix = pass_at_k_matrix(counts, ks)
    if len(matrix) < 2:
        curve = matrix.mean(axis=0).tolist() if len(matrix) else [0.0] * len(ks)
        return curve, curve
    result = bootstrap((matrix,), lambda x, axis: x.mean(axis=axis), axis=0, confidence_level=confidence,
                       n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed))
    return result.confidence_interval.low.tolist(), result.confidence_interval.high.tolist()


def crossover_k(ks: Sequence[int], base: Sequence[float], trained: Sequence[float]) -> int | None:
    """The smallest k at which the base's pass@k reaches the trained model's, or None."""
    return next((k for k, b, t in zip(ks, base, trained) if b >= t), None)


def coverage(found: Iterable[set[Hashable]], solutions: Iterable[set[Hashable]]) -> float | None:
    """Mean over problems with a known, non-empty solution set of |found ∩ all| / |all|."""
    shares = [len(f & s) / len(s) for f, s in zip(found, solutions) if s]
    return float(np.mean(shares)) if shares else None


def novel_correct(solutions: Iterable[str], demonstrated: Callable[[str], bool]) -> float | None:
    """The share of correct solutions that the SFT data never demonstrates (by the
    `demonstrated` rule, e.g. `SupportRule.covers`); None without correct solutions."""
    solutions = list(solutions)
    return sum(not demonstrated(s) for s in solutions) / len(solutions) if solutions else None
