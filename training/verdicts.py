"""The answer: does a search strategy break the plateau on this testbed?

Each strategy × trainer cell (sparse reward, SFT initialisation: the study's main grid) is
compared with sampling under the same trainer, at equal generated tokens, on the final
evaluation: what sampling-based RL cannot reach is the beyond-support slice, so the
verdict reads the Δ of `beyond_support/pass@K` (K the largest k evaluated), with its Welch
95% interval over seeds (`training.intervals.welch`):

* yes: the interval's lower bound > 0 (the strategy solves more beyond support);
* no: its upper bound < 0.05 (at most a negligible gain);
* inconclusive otherwise (or with < 2 seeds on a side, or no lab metrics);
* invalid cell: the cell, or the sampling cell it is measured against, is health-flagged
  (`training.cell_health`): its numbers do not measure what its name says, so no verdict is
  drawn from them.

A cell whose final cumulative tokens differ from sampling's by more than 10% is marked:
the comparison is then not at equal compute.

The exploration baselines (`+experiment=plateau_baselines`: trainer labels `grpo+kl_cov`,
`grpo+treerl`, ...) are rows too, each against sampling with its base trainer (`grpo`):
what search must beat is there in the same table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from training.intervals import Interval, welch
from training.runs import Run, pass_ks

Cells = dict[tuple[str, str], list[Run]]
SAMPLING = "sampling"
TOKEN_TOLERANCE = 0.10
METRICS = ("beyond_support/pass@1", "beyond_support/pass@K", "all/pass@K", "all/coverage", "all/novel_correct")
VERDICT_METRIC = "beyond_support/pass@K"


@dataclass(frozen=True)
class StrategyRow:
    strategy: str
    trainer: str
    seeds: int
    tokens: str
    metrics: dict[str, str]  # METRICS name (K filled in) -> "value (Δ ± half)"
    verdict: str  # yes / no / inconclusive / invalid cell
    why: str


def main_grid(runs: list[Run]) -> bool:
    """Sparse reward and an SFT initialisation: the cells the strategy question is asked on."""
    return all(r.reward in (None, "sparse") and r.init != "pretrained" for r in runs)


def finals(runs: list[Run], key: str) -> list[float] | None:
    out = [r.summary(key, "final") for r in runs]
    return None if any(v is None for v in out) else out


def tokens_text(runs: list[Run], baseline: list[Run] | None) -> str:
    mine = finals(runs, "cumulative_tokens")
    if mine is None:
        return "–"
    text = f"{statistics.fmean(mine):,.0f}"
    theirs = finals(baseline, "cumulative_tokens") if baseline else None
    if not theirs:
        return text
    ours, base = statistics.fmean(mine), statistics.fmean(theirs)
    off = ours / base - 1 if base else (0.0 if ours == base else float("inf"))
    return text + f" (sampling {base:,.0f}" + (f", ⚠ {off:+.0%})" if abs(off) > TOKEN_TOLERANCE else ")")


def delta(runs: list[Run], baseline: list[Run] | None, key: str) -> tuple[str, Interval | None]:
    """`value (Δ ± half)` of the final `key` against sampling, and the Δ's interval."""
    mine = finals(runs, key)
    if mine is None:
        return "–", None
    theirs = finals(baseline, key) if baseline else None
    if theirs is None:
        return f"{statistics.fmean(mine):.3f}", None
    d = welch(mine, theirs)
    return f"{statistics.fmean(mine):.3f} ({d.mean:+.3f} ± {'n/a' if d.half is None else f'{d.half:.3f}'})", d


def judge(d: Interval | None, flags: list[str], baseline: list[Run] | None, trainer: str, key: str) -> tuple[str, str]:
    if flags:
        return "invalid cell", "; ".join(flags)
    if not baseline:
        return "inconclusive", f"no {SAMPLING} × {trainer} runs"
    if d is None:
        return "inconclusive", f"no {key} (lab metrics) on both sides"
    if not d.known:
        return "inconclusive", f"needs ≥ 2 seeds on both sides (has {d.n})"
    if d.low > 0:
        return "yes", f"Δ {key} {d.text(True)}: lower bound > 0"
    if d.high < 0.05:
        return "no", f"Δ {key} {d.text(True)}: upper bound < 0.05"
    return "inconclusive", f"Δ {key} {d.text(True)}: neither above 0 nor below 0.05"


def baseline_label(cells: Cells, strategy: str, trainer: str) -> str | None:
    """The sampling trainer label a cell is judged against: its own trainer's, or for an
    exploration baseline (`grpo+kl_cov`) its base trainer's; None for the reference cells."""
    base = trainer.split("+", 1)[0]
    if strategy == SAMPLING:
        return None if trainer == base else base
    return trainer if (SAMPLING, trainer) in cells else base


def answer(cells: Cells, flags: dict[tuple[str, str], list[str]]) -> list[StrategyRow]:
    """One row per cell of the main grid but the sampling references, against sampling with
    its (base) trainer."""
    rows = []
    for (strategy, trainer), runs in cells.items():
        reference = baseline_label(cells, strategy, trainer)
        if reference is None or not main_grid(runs):
            continue
        baseline = cells.get((SAMPLING, reference))
        ks = pass_ks([row for r in runs + (baseline or []) for row in r.evals])
        metrics, intervals = {}, {}
        for name in METRICS:
            key = name.replace("@K", f"@{ks[-1]}") if ks else name
            metrics[key], intervals[name] = delta(runs, baseline, key)
        key = VERDICT_METRIC.replace("@K", f"@{ks[-1]}") if ks else VERDICT_METRIC
        own = flags.get((strategy, trainer), [])
        theirs = [f"reference {SAMPLING} × {reference}: {f}" for f in flags.get((SAMPLING, reference), [])]
        verdict, why = judge(intervals[VERDICT_METRIC], own + theirs, baseline, reference, key)
        rows.append(StrategyRow(strategy, trainer, len(runs), tokens_text(runs, baseline), metrics, verdict, why))
    return rows


def markdown(rows: list[StrategyRow]) -> str:
    """The table (value (Δ vs sampling ± 95% half-width)) and one verdict line per cell."""
    if not rows:
        return "No strategy cell besides sampling with a sparse reward and an SFT initialisation."
    heads = list(rows[0].metrics)
    lines = ["| strategy | trainer | seeds | tokens | " + " | ".join(heads) + " | breaks the plateau? |",
             "|" + "---|" * (len(heads) + 5)]
    lines += [f"| {r.strategy} | {r.trainer} | {r.seeds} | {r.tokens} | " + " | ".join(r.metrics.values())
              + f" | {r.verdict} |" for r in rows]
    lines += [""] + [f"- **{r.strategy} × {r.trainer}** breaks the plateau on this testbed: **{r.verdict}** ({r.why})"
                     for r in rows]
    return "\n".join(lines)
