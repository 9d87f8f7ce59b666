"""The study's instruments against brute force and hand-made cases."""

import itertools

import numpy as np
import pytest

from training.instruments import (coverage, crossover_k, curve_band, novel_correct, pass_at_k_curve,
                                  pass_at_k_matrix, powers_of_two)


def brute_pass_at_k(outcomes: list[bool], k: int) -> float:
    """The share of all k-subsets of the samples that hold a correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_powers_of_two():
    assert powers_of_two(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert powers_of_two(12) == [1, 2, 4, 8, 12] and powers_of_two(1) == [1]


@pytest.mark.parametrize("seed", range(5))
def test_pass_at_k_curve_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    problems = [list(rng.random(10) < rng.random()) for _ in range(6)]
    ks = [1, 2, 4, 8, 10]
    brute = [np.mean([brute_pass_at_k(p, k) for p in problems]) for k in ks]
    assert pass_at_k_curve([(len(p), sum(p)) for p in problems], ks) == pytest.approx(brute)


def test_k_above_n_is_scored_at_n():
    assert pass_at_k_matrix([(4, 1)], [8]).tolist() == [[1.0]]
    assert pass_at_k_matrix([(0, 0)], [1, 2]).tolist() == [[0.0, 0.0]]


def test_bootstrap_band_brackets_the_curve():
    counts = [(16, c) for c in (0, 1, 3, 8, 16, 2, 0, 5)]
    ks = powers_of_two(16)
    low, high = curve_band(counts, ks, seed=0)
    curve = pass_at_k_curve(counts, ks)
    assert all(lo <= m <= hi for lo, m, hi in zip(low, curve, high))
    assert high[0] - low[0] > 0.05  # eight problems give a wide band


def test_crossover_k_on_synthetic_curves():
    ks = [1, 2, 4, 8, 16]
    trained = [0.40, 0.50, 0.55, 0.58, 0.60]
    assert crossover_k(ks, [0.10, 0.25, 0.45, 0.60, 0.75], trained) == 8  # Yue et al.'s picture
    assert crossover_k(ks, [0.10, 0.20, 0.30, 0.40, 0.50], trained) is None  # RL ahead everywhere
    assert crossover_k(ks, [0.50, 0.60, 0.70, 0.80, 0.90], trained) == 1  # the trained model is worse


def test_coverage_and_novelty_on_hand_made_sets():
    solutions = [{"1 + 2", "3 * 1", "3 / 1"}, {"4 - 1"}, set()]
    found = [{"1 + 2", "3 / 1"}, set(), {"5"}]
    assert coverage(found, solutions) == pytest.approx((2 / 3 + 0) / 2)  # the unknown set is skipped
    assert coverage([set()], [set()]) is None
    no_minus = lambda answer: "-" not in answer  # noqa: E731
    assert novel_correct(["1 + 2", "4 - 1", "6 - 3", "2 * 3"], no_minus) == 0.5
    assert novel_correct([], no_minus) is None


def test_support_split_against_the_solver_on_small_cases():
    from tasks.countdown import Countdown
    from tasks.support import SupportRule, pattern

    task = Countdown(min_numbers=2, max_numbers=3, number_range=[1, 6], target_range=[2, 30], train_size=50,
                     test_size=10)
    rule = SupportRule(exclude_ops=("-",))
    [needs_minus] = [task.make_problem("m", [6, 1], 5)]  # only 6 - 1 reaches 5
    [plain] = [task.make_problem("p", [2, 3], 6)]  # 2 * 3
    mixed = task.make_problem("x", [4, 2, 1], 3)  # 4 - 1 but also 2 + 1
    assert task.solutions(needs_minus) == ["6 - 1"]
    assert rule.slice_of(task, needs_minus) == "beyond_support"
    assert rule.slice_of(task, plain) == rule.slice_of(task, mixed) == "in_support"
    assert pattern("4 * (3 - 1)") == (("*", "-"), "n * (n - n)")
    for p in task.problems("train"):  # the rule agrees with a direct reading of the solver's list
        sols = task.solutions(p)
        assert (rule.slice_of(task, p) == "beyond_support") == all("-" in s for s in sols)
    with pytest.raises(ValueError, match="support.exclude_ops"):
        SupportRule(exclude_ops=("^",))
