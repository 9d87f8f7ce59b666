"""The fidelity table on synthetic sweeps read from disk: each finding reproduced on numbers
built to show it, not reproduced on numbers built against it, and inconclusive (with why)
when a cell is missing or has one seed. Intervals are checked against t quantiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lab_sweeps import Sweep, lab
from training.fidelity import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Finding, fidelity, markdown, rules_text
from training.intervals import over_seeds, welch
from training.runs import collect_runs, complete_cells

T2, T4 = 4.302653, 2.776445  # two-sided 95% t quantiles, df 2 and 4


def findings(path: Path) -> dict[int, Finding]:
    return {f.number: f for f in fidelity(complete_cells(collect_runs(path)))}


def test_intervals_match_the_t_formulas() -> None:
    one = over_seeds([0.10, 0.12, 0.11])
    assert one.mean == pytest.approx(0.11) and one.half == pytest.approx(T2 * 0.01 / math.sqrt(3), rel=1e-6)
    d = welch([0.35, 0.36, 0.34], [0.33, 0.35, 0.34])  # equal spreads: Welch's df is 4
    assert d.mean == pytest.approx(0.01) and d.half == pytest.approx(T4 * math.sqrt(2 * 0.0001 / 3), rel=1e-6)
    assert not over_seeds([0.3]).known and over_seeds([0.3]).text() == "0.300 [n/a: 1 seed]"
    assert welch([0.1, 0.1], [0.2, 0.2]).text(True) == "-0.100 [-0.100, -0.100]"  # no spread: zero width


@pytest.fixture
def reproducing(tmp_path: Path) -> Path:
    """A testbed that shows every finding: EI rises then stalls, PPO ties it, dense ties
    sparse, RL closes most of the pretrained gap, pass@64 falls with a crossover at k = 8,
    and nothing beyond support is solved."""
    s = Sweep(tmp_path / "reproducing")
    base, final = lab([8] * 8, [0] * 4), lab([32] * 4 + [0] * 4, [0] * 4)
    labs = [base, final, final, final, final]
    for seed, maj1 in enumerate([[0.20, 0.30, 0.34, 0.35, 0.35], [0.20, 0.32, 0.35, 0.35, 0.35],
                                 [0.20, 0.31, 0.33, 0.34, 0.35]]):
        s.add("sampling", "ei", seed, maj1, labs=labs)
    for seed, last in enumerate((0.33, 0.35, 0.34)):
        s.add("sampling", "ppo", seed, [0.20, 0.30, 0.32, 0.33, last], labs=labs)
    for seed, last in enumerate((0.35, 0.36, 0.34)):
        s.add("sampling", "ppo", seed, [0.20, 0.30, 0.33, 0.34, last], reward="dense")
    for seed, last in enumerate((0.30, 0.31, 0.29)):
        s.add("sampling", "ei", seed, [0.05, 0.15, 0.25, 0.28, last], init="pretrained")
    return s.path


def test_every_finding_reproduces_on_a_testbed_built_for_it(reproducing: Path) -> None:
    f = findings(reproducing)
    assert {n: x.verdict for n, x in f.items()} == dict.fromkeys(range(1, 7), REPRODUCED)
    h2 = T2 * 0.01 / math.sqrt(3)
    assert f[1].measured == f"maj@1 ei 0.350, ppo 0.340; ei − ppo +0.010 [{0.01 - h2:+.3f}, {0.01 + h2:+.3f}]"
    assert f[2].measured == (f"ei maj@1 gain 0→1 +0.110 [{0.11 - h2:+.3f}, {0.11 + h2:+.3f}], "
                             f"2→4 +0.010 [{0.01 - h2:+.3f}, {0.01 + h2:+.3f}]")
    # base: 8 of 12 problems at 8/64 correct; final: 4 at 32/64: pass@64 0.667 -> 0.333, base ahead from k = 8
    assert f[3].measured == ("ei: Δpass@64 -0.333 [-0.333, -0.333], crossover_k 8; "
                             "ppo: Δpass@64 -0.333 [-0.333, -0.333], crossover_k 8")
    h4 = T4 * math.sqrt(2 * 0.0001 / 3)
    assert f[4].measured == f"ppo+dense − ppo maj@1 +0.010 [{0.01 - h4:+.3f}, {0.01 + h4:+.3f}]"
    assert f[5].measured == f"ei: gap base 0.150 → final 0.050, narrowing +0.100 [{0.1 - h2:+.3f}, {0.1 + h2:+.3f}]"
    assert f[6].measured.startswith("ei: pass@1 0.000 [0.000, 0.000], pass@64 0.000 [0.000, 0.000] on 4 problems; ppo:")
    assert all(x.why == "" for x in f.values())


@pytest.fixture
def contradicting(tmp_path: Path) -> Path:
    """A testbed against every finding: EI never rises, PPO beats it, dense beats sparse,
    the pretrained gap stays, pass@64 rises with no crossover, beyond support gets solved."""
    s = Sweep(tmp_path / "contradicting")
    labs = [lab([4] * 4 + [0] * 4, [0] * 4)] + [lab([8] * 8, [8] * 4)] * 4
    for seed, maj1 in enumerate([[0.20, 0.19, 0.20, 0.20, 0.20], [0.20, 0.22, 0.21, 0.21, 0.21],
                                 [0.20, 0.22, 0.19, 0.19, 0.19]]):
        s.add("sampling", "ei", seed, maj1, labs=labs)
    for seed, last in enumerate((0.50, 0.52, 0.51)):
        s.add("sampling", "ppo", seed, [0.20, 0.30, 0.40, 0.45, last], labs=labs)
        s.add("sampling", "ppo", seed, [0.20, 0.40, 0.50, 0.60, last + 0.20], reward="dense")
    for seed, last in enumerate((0.06, 0.07, 0.05)):
        s.add("sampling", "ei", seed, [0.05, 0.05, 0.05, 0.05, last], init="pretrained")
    return s.path


def test_every_finding_fails_on_a_testbed_built_against_it(contradicting: Path) -> None:
    f = findings(contradicting)
    assert {n: x.verdict for n, x in f.items()} == dict.fromkeys(range(1, 7), NOT_REPRODUCED)
    # EI's final - base gains 0.00, 0.01, -0.01: the trainer behind did not learn at all
    assert f[1].why.startswith("PPO ahead; ei did not learn (maj@1 gain over its base ")
    assert f[1].why.endswith(f"000 [{-T2 * 0.01 / math.sqrt(3):+.3f}, {T2 * 0.01 / math.sqrt(3):+.3f}])")
    assert "ei − ppo -0.310 [" in f[1].measured
    assert f[2].why == "no rise: iteration 1 gains nothing significant"
    h = T2 * math.sqrt(0.0003) / math.sqrt(3)  # gains -0.01, 0.02, 0.02
    assert f[2].measured.startswith(f"ei maj@1 gain 0→1 +0.010 [{0.01 - h:+.3f}, {0.01 + h:+.3f}]")
    assert f[3].measured.startswith("ei: Δpass@64 +0.667 [+0.667, +0.667], crossover_k none")
    assert f[3].why == "ei: pass@64 rises, no crossover; ppo: pass@64 rises, no crossover"
    assert f[4].why == "ppo: dense rewards beat sparse" and "+0.200 [" in f[4].measured
    assert f[5].why == "ei: no narrowing" and "narrowing +0.010 [" in f[5].measured
    assert f[6].why == "ei: solves beyond support; ppo: solves beyond support"
    assert f[6].measured.startswith("ei: pass@1 0.125 [0.125, 0.125], pass@64 1.000 [1.000, 1.000] on 4 problems")


def test_an_ei_still_rising_at_the_end_is_no_plateau(tmp_path: Path) -> None:
    s = Sweep(tmp_path / "rising")
    for seed, jitter in enumerate((0.0, 0.01, 0.02)):
        s.add("sampling", "ei", seed, [0.1, 0.2 + jitter, 0.3, 0.4 + jitter, 0.5 + jitter / 2])
    f = findings(s.path)[2]
    assert (f.verdict, f.why) == (NOT_REPRODUCED, "still rising: the last two iterations gain significantly")


def test_a_comparison_reading_a_health_flagged_cell_is_inconclusive_with_its_numbers(reproducing: Path) -> None:
    """A runaway PPO cell (flagged by the report's health table) proves nothing for or against
    the findings that read it; the findings that read only EI keep their verdicts."""
    cells = complete_cells(collect_runs(reproducing))
    flag = "update approx_kl 0.22 (> 0.15): the update moved the policy far from the one that sampled its rollouts"
    f = {x.number: x for x in fidelity(cells, {("sampling", "ppo"): [flag], ("sampling", "ei"): []})}
    assert {n: x.verdict for n, x in f.items()} == {1: INCONCLUSIVE, 2: REPRODUCED, 3: INCONCLUSIVE,
                                                     4: INCONCLUSIVE, 5: REPRODUCED, 6: INCONCLUSIVE}
    assert f[1].why == f"sampling × ppo is health-flagged: {flag}"
    assert f[1].measured == findings(reproducing)[1].measured  # the numbers are still shown


def test_missing_cells_and_short_runs_are_inconclusive_with_why(tmp_path: Path) -> None:
    s = Sweep(tmp_path / "ei_only")
    for seed in range(3):
        s.add("sampling", "ei", seed, [0.2, 0.3, 0.3 + 0.01 * seed])
        s.add("mcts", "ppo", seed, [0.2, 0.3, 0.3])  # another strategy's cells are not the sampling ones
    f = findings(s.path)
    assert {n: x.verdict for n, x in f.items()} == dict.fromkeys(range(1, 7), INCONCLUSIVE)
    assert {n: x.why for n, x in f.items()} == {
        1: "no sampling × ppo runs",
        2: "needs ≥ 3 iterations (has 2)",
        3: "sampling × ei rows carry no all/pass@k (no lab metrics); no sampling × ppo runs",
        4: "no sampling × ppo+dense runs",
        5: "no sampling × ei@pretrained runs; no sampling × ppo runs",
        6: "sampling × ei: no beyond_support problems (or no lab metrics); no sampling × ppo runs",
    }
    assert all(x.measured == "–" for x in f.values())


def test_one_seed_gives_no_interval_and_no_verdict(tmp_path: Path, reproducing: Path) -> None:
    s = Sweep(tmp_path / "one_seed")
    labs = [lab([8] * 8, [0] * 4)] * 5
    for trainer in ("ei", "ppo"):
        s.add("sampling", trainer, 0, [0.2, 0.3, 0.35, 0.35, 0.35], labs=labs)
    f = findings(s.path)
    assert f[1].verdict == INCONCLUSIVE and f[1].why == "needs ≥ 2 seeds of sampling × ei (has 1)"
    assert f[6].why == "needs ≥ 2 seeds of sampling × ei (has 1); needs ≥ 2 seeds of sampling × ppo (has 1)"
    assert {x.verdict for x in f.values()} == {INCONCLUSIVE}


def test_a_wide_interval_is_inconclusive_not_a_tie(tmp_path: Path) -> None:
    s = Sweep(tmp_path / "wide")
    for seed, (ei, ppo) in enumerate(((0.1, 0.3), (0.5, 0.3), (0.3, 0.31))):
        s.add("sampling", "ei", seed, [0.1, ei])
        s.add("sampling", "ppo", seed, [0.1, ppo])
    f = findings(s.path)[1]
    assert f.verdict == INCONCLUSIVE and f.why.startswith("interval too wide (half-width 0.49")


def test_the_table_prints_each_row_and_the_rules(reproducing: Path) -> None:
    f = fidelity(complete_cells(collect_runs(reproducing)))
    table = markdown(f)
    assert table.splitlines()[0] == "| # | finding | measured: mean [95% CI] | verdict | why |"
    assert "| 2 | plateau: EI's first iteration gains, its last two do not | ei maj@1 gain 0→1" in table
    assert table.count("| reproduced | – |") == 6
    rules = rules_text()
    assert rules.startswith("Rules (every cell a rule reads needs >= 2 complete seeds")
    assert all(f"\n{n}. " in rules for n in range(1, 7))


def test_rl_never_ahead_of_the_base_is_no_crossover_finding(tmp_path: Path) -> None:
    """A trained curve below the base's at every k crosses at k = 1: that is not Yue et al.'s
    picture (RL ahead at small k, the base at large k), whatever pass@K does."""
    s = Sweep(tmp_path / "behind")
    labs = [lab([8] * 8, [0] * 4), lab([4] * 8, [0] * 4)]
    for seed in range(3):
        for trainer in ("ei", "ppo"):
            s.add("sampling", trainer, seed, [0.2, 0.1 + 0.01 * seed], labs=labs)
    f = findings(s.path)[3]
    assert f.verdict == NOT_REPRODUCED
    assert f.why == "ei: RL is never ahead of the base, at any k; ppo: RL is never ahead of the base, at any k"
    assert "crossover_k 1" in f.measured


def test_ei_ahead_of_a_ppo_that_learned_says_only_who_is_ahead(tmp_path: Path) -> None:
    s = Sweep(tmp_path / "ei_ahead")
    for seed, last in enumerate((0.50, 0.52, 0.51)):
        s.add("sampling", "ei", seed, [0.20, 0.40, 0.45, 0.50, last])
        s.add("sampling", "ppo", seed, [0.20, 0.25, 0.28, 0.30, last - 0.20])
    f = findings(s.path)[1]
    assert (f.verdict, f.why) == (NOT_REPRODUCED, "EI ahead")
