"""The fidelity table: does the miniature reproduce the published findings it stands in for?

A study of "does exploration break the plateau" means something only on a testbed where the
plateau shows, so the report first checks the sampling cells (plain RL, no search) against
six findings of the literature, one row each, with the numbers, 95% intervals over seeds
(`training.intervals`) and a verdict. Cell labels are `training.runs.Run.label`s.

Rules (every cell a rule reads needs >= 2 complete seeds; a missing cell or a single
seed makes the finding inconclusive, with why):
1. EI ≈ PPO (Havrilla et al. 2024): final maj@1 of sampling × ei minus sampling × ppo
   (Welch). Reproduced if the CI contains 0 and its half-width is <= 0.10; not reproduced
   if it excludes 0 (the why names the trainer ahead, and says so when the one behind did
   not learn: its final − base maj@1 gain's CI does not lie above 0); else inconclusive.
2. Plateau: sampling × ei's per-seed gain of iteration 1 over iteration 0 (one-sample t)
   has CI lower > 0, and its gain over the last two iterations (maj@1[T] − maj@1[T−2]) has
   CI lower <= 0. Reproduced if both; not reproduced if the first gain is not significant
   ("no rise": the testbed does not show the phenomenon) or the late gain is ("still
   rising"); inconclusive with T < 3 iterations.
3. pass@k at large k barely moves, with a crossover (Yue et al. 2025): for sampling × ei and
   × ppo, Δ = final − base all/pass@K (K the largest k) per seed, and crossover_k of the
   seed-mean base curve against the seed-mean final curve. Reproduced if a crossover exists
   above k = 1 (RL ahead at small k, the base at large k) and mean Δ <= 0.05; not reproduced
   if RL is never ahead (crossover at k = 1), or none exists and Δ's CI lower > 0.05; else
   inconclusive.
4. Dense step rewards do not beat sparse (Havrilla et al. 2024): final maj@1 of
   sampling × ppo+dense minus sampling × ppo (and t+dense − t for any other t present), Welch.
   Reproduced if CI lower <= 0 and upper <= 0.10; not reproduced if lower > 0; else inconclusive.
5. RL narrows the pretrained-vs-SFT gap (Havrilla et al. 2024): per trainer t with both
   sampling × t (SFT init) and sampling × t@pretrained, narrowing = gap(base) − gap(final)
   of maj@1 = gain(pretrained) − gain(SFT), Welch over per-seed final − base gains.
   Reproduced if CI lower > 0; not reproduced if CI upper < 0, or the CI contains 0 with
   half-width <= 0.05 (no narrowing); else inconclusive.
6. Sampling-based RL solves almost nothing beyond support: final beyond_support/pass@1 of
   sampling × ei and × ppo over seeds. Reproduced if CI upper <= 0.05; not reproduced if CI
   lower > 0.05; else inconclusive. pass@K and the slice's problem count are shown too.
A comparison that reads a health-flagged cell (`training.cell_health`) is inconclusive, its
numbers still shown. A finding with several comparisons (3-6) is not reproduced if any
comparison is not, reproduced if all are, else inconclusive.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass

from training.instruments import crossover_k
from training.intervals import over_seeds, welch
from training.runs import Run, pass_ks

Cells = dict[tuple[str, str], list[Run]]
Flags = dict[tuple[str, str], list[str]]  # the health flags of a cell (training.cell_health), by (strategy, trainer)
SAMPLING = "sampling"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MIN_SEEDS, MIN_ITERATIONS = 2, 3


@dataclass(frozen=True)
class Finding:
    number: int
    claim: str
    measured: str
    verdict: str
    why: str = ""


@dataclass(frozen=True)
class Part:
    """One comparison of a finding (one trainer's, say)."""

    verdict: str
    measured: str = ""
    why: str = ""


class Missing(Exception):
    """A cell or metric a rule needs is absent; the message says which."""


def members(cells: Cells, label: str) -> list[Run]:
    """The sampling × `label` runs, or Missing when there are fewer than MIN_SEEDS."""
    runs = cells.get((SAMPLING, label), [])
    if not runs:
        raise Missing(f"no {SAMPLING} × {label} runs")
    if len(runs) < MIN_SEEDS:
        raise Missing(f"needs ≥ {MIN_SEEDS} seeds of {SAMPLING} × {label} (has {len(runs)})")
    return runs


def values(runs: list[Run], key: str, how: str) -> list[float]:
    """`key` summarised (`base`/`final`) per run; Missing when a run lacks it."""
    out = [r.summary(key, how) for r in runs]
    if any(v is None for v in out):
        raise Missing(f"{runs[0].strategy} × {runs[0].label} runs lack {key}")
    return out


def gains(runs: list[Run], key: str) -> list[float]:
    return [f - b for f, b in zip(values(runs, key, "final"), values(runs, key, "base"))]


def ei_vs_ppo(cells: Cells) -> Part:
    runs = {label: members(cells, label) for label in ("ei", "ppo")}
    ei, ppo = (values(runs[label], "maj@1", "final") for label in ("ei", "ppo"))
    d = welch(ei, ppo)
    measured = f"maj@1 ei {statistics.fmean(ei):.3f}, ppo {statistics.fmean(ppo):.3f}; ei − ppo {d.text(True)}"
    if not d.contains(0):
        behind = "ppo" if d.mean > 0 else "ei"
        gain = over_seeds(gains(runs[behind], "maj@1"))
        learned = "" if gain.low > 0 else f"; {behind} did not learn (maj@1 gain over its base {gain.text(True)})"
        return Part(NOT_REPRODUCED, measured, f"{'EI' if behind == 'ppo' else 'PPO'} ahead{learned}")
    if d.half <= 0.10:
        return Part(REPRODUCED, measured)
    return Part(INCONCLUSIVE, measured, f"interval too wide (half-width {d.half:.3f} > 0.10): more seeds")


def at_gain(runs: list[Run], late: int, early: int) -> list[float]:
    out = [(r.at("maj@1", late), r.at("maj@1", early)) for r in runs]
    if any(a is None or b is None for a, b in out):
        raise Missing(f"maj@1 missing at iteration {early} or {late}")
    return [a - b for a, b in out]


def plateau(cells: Cells) -> Part:
    runs = members(cells, "ei")
    last = min(r.evals[-1]["iteration"] for r in runs)
    if last < MIN_ITERATIONS:
        raise Missing(f"needs ≥ {MIN_ITERATIONS} iterations (has {last})")
    first, late = over_seeds(at_gain(runs, 1, 0)), over_seeds(at_gain(runs, last, last - 2))
    measured = f"ei maj@1 gain 0→1 {first.text(True)}, {last - 2}→{last} {late.text(True)}"
    if first.low <= 0:
        return Part(NOT_REPRODUCED, measured, "no rise: iteration 1 gains nothing significant")
    if late.low > 0:
        return Part(NOT_REPRODUCED, measured, "still rising: the last two iterations gain significantly")
    return Part(REPRODUCED, measured)


def passk_barely_moves(cells: Cells, label: str) -> Part:
    runs = members(cells, label)
    ks = pass_ks([row for r in runs for row in r.evals])
    if not ks:
        raise Missing(f"{SAMPLING} × {label} rows carry no all/pass@k (no lab metrics)")
    curves = {how: [statistics.fmean(values(runs, f"all/pass@{k}", how)) for k in ks] for how in ("base", "final")}
    cross = crossover_k(ks, curves["base"], curves["final"])
    delta = over_seeds(gains(runs, f"all/pass@{ks[-1]}"))
    crossing = "none" if cross is None else str(cross)
    measured = f"{label}: Δpass@{ks[-1]} {delta.text(True)}, crossover_k {crossing}"
    if cross == ks[0]:
        return Part(NOT_REPRODUCED, measured, f"{label}: RL is never ahead of the base, at any k")
    if cross is not None and delta.mean <= 0.05:
        return Part(REPRODUCED, measured)
    if cross is None and delta.low > 0.05:
        return Part(NOT_REPRODUCED, measured, f"{label}: pass@{ks[-1]} rises, no crossover")
    why = "no crossover, but no significant rise either" if cross is None else f"pass@{ks[-1]} moves by > 0.05"
    return Part(INCONCLUSIVE, measured, f"{label}: {why}")


def dense_vs_sparse(cells: Cells, label: str) -> Part:
    dense = values(members(cells, f"{label}+dense"), "maj@1", "final")
    d = welch(dense, values(members(cells, label), "maj@1", "final"))
    measured = f"{label}+dense − {label} maj@1 {d.text(True)}"
    if d.low > 0:
        return Part(NOT_REPRODUCED, measured, f"{label}: dense rewards beat sparse")
    if d.high <= 0.10:
        return Part(REPRODUCED, measured)
    return Part(INCONCLUSIVE, measured, f"{label}: interval reaches {d.high:+.3f} > 0.10")


def narrowing(cells: Cells, label: str) -> Part:
    sft, pre = members(cells, label), members(cells, f"{label}@pretrained")
    gap = {how: statistics.fmean(values(sft, "maj@1", how)) - statistics.fmean(values(pre, "maj@1", how))
           for how in ("base", "final")}
    n = welch(gains(pre, "maj@1"), gains(sft, "maj@1"))
    measured = f"{label}: gap base {gap['base']:.3f} → final {gap['final']:.3f}, narrowing {n.text(True)}"
    if n.low > 0:
        return Part(REPRODUCED, measured)
    if n.high < 0:
        return Part(NOT_REPRODUCED, measured, f"{label}: the gap widens")
    if n.half <= 0.05:
        return Part(NOT_REPRODUCED, measured, f"{label}: no narrowing")
    return Part(INCONCLUSIVE, measured, f"{label}: interval too wide (half-width {n.half:.3f} > 0.05)")


def beyond_support(cells: Cells, label: str) -> Part:
    runs = members(cells, label)
    ks = pass_ks([row for r in runs for row in r.evals], "beyond_support")
    if not ks:
        raise Missing(f"{SAMPLING} × {label}: no beyond_support problems (or no lab metrics)")
    p1, pk = (over_seeds(values(runs, f"beyond_support/pass@{k}", "final")) for k in (1, ks[-1]))
    problems = sorted({r.summary("beyond_support/problems", "final") for r in runs} - {None})
    measured = (f"{label}: pass@1 {p1.text()}, pass@{ks[-1]} {pk.text()} "
                f"on {'/'.join(f'{p:.0f}' for p in problems)} problems")
    if p1.high <= 0.05:
        return Part(REPRODUCED, measured)
    if p1.low > 0.05:
        return Part(NOT_REPRODUCED, measured, f"{label}: solves beyond support")
    return Part(INCONCLUSIVE, measured, f"{label}: pass@1 interval reaches {p1.high:.3f} > 0.05")


def part(rule: Callable[..., Part], *args: object, reads: tuple[str, ...] = (), flags: Flags | None = None) -> Part:
    """`rule(*args)`, inconclusive when a cell it needs is missing, or (its numbers still shown)
    when one of the sampling cells it `reads` is health-flagged: a broken cell proves nothing."""
    try:
        judged = rule(*args)
    except Missing as e:
        return Part(INCONCLUSIVE, why=str(e))
    broken = [f"{SAMPLING} × {label} is health-flagged: {'; '.join(flags[SAMPLING, label])}"
              for label in reads if flags and flags.get((SAMPLING, label))]
    return Part(INCONCLUSIVE, judged.measured, "; ".join(broken)) if broken else judged


def combine(number: int, claim: str, parts: list[Part]) -> Finding:
    verdicts = [p.verdict for p in parts]
    verdict = (NOT_REPRODUCED if NOT_REPRODUCED in verdicts
               else REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE)
    return Finding(number, claim, "; ".join(p.measured for p in parts if p.measured) or "–", verdict,
                   "; ".join(p.why for p in parts if p.why))


def trainers_with(cells: Cells, suffix: str) -> list[str]:
    """Trainer labels t with a sampling × t<suffix> cell."""
    return sorted({t[: -len(suffix)] for s, t in cells if s == SAMPLING and t.endswith(suffix)})


def fidelity(cells: Cells, flags: Flags | None = None) -> list[Finding]:
    """The six findings of the module docstring, judged on `cells` (complete runs by cell);
    a comparison that reads a cell `flags` marks (`training.cell_health`) is inconclusive."""
    dense = sorted({"ppo", *trainers_with(cells, "+dense")})
    pretrained = trainers_with(cells, "@pretrained") or ["ei", "ppo"]
    judged = partial(part, flags=flags)
    return [
        combine(1, "EI ≈ PPO in final maj@1 (Havrilla et al.)", [judged(ei_vs_ppo, cells, reads=("ei", "ppo"))]),
        combine(2, "plateau: EI's first iteration gains, its last two do not",
                [judged(plateau, cells, reads=("ei",))]),
        combine(3, "pass@k at large k barely moves; crossover with the base (Yue et al.)",
                [judged(passk_barely_moves, cells, t, reads=(t,)) for t in ("ei", "ppo")]),
        combine(4, "dense step rewards do not beat sparse (Havrilla et al.)",
                [judged(dense_vs_sparse, cells, t, reads=(t, f"{t}+dense")) for t in dense]),
        combine(5, "RL narrows the pretrained-vs-SFT gap (Havrilla et al.)",
                [judged(narrowing, cells, t, reads=(t, f"{t}@pretrained")) for t in pretrained]),
        combine(6, "sampling-based RL solves almost nothing beyond support",
                [judged(beyond_support, cells, t, reads=(t,)) for t in ("ei", "ppo")]),
    ]


def rules_text() -> str:
    """The rules as the module docstring states them (printed under the table)."""
    return "Rules" + __doc__.split("\nRules", 1)[1].rstrip()


def markdown(findings: list[Finding]) -> str:
    lines = ["| # | finding | measured: mean [95% CI] | verdict | why |", "|---|---|---|---|---|"]
    lines += [f"| {f.number} | {f.claim} | {f.measured} | {f.verdict} | {f.why or '–'} |" for f in findings]
    return "\n".join(lines)
