"""Health of each study cell, from the `kind: train` rows of its runs, and the flags that
mark a cell whose numbers do not measure what its name says.

A cell is flagged when, averaged over its runs, its search spent under 90% of the token
budget (`spent_fraction_mean`), its node evaluator told good states from bad no better
than AUC 0.55 (`value_auc`), its trainer dropped more than 5% of the searched traces
(`traces_dropped` ÷ `n_traces`), or a policy-gradient update left the policy that sampled
its rollouts far behind: `approx_kl` (the mean of log π_old − log π over an update's
tokens) above 0.15 in any round of any run, or not a number in any round (a train row carries
`approx_kl: null` where the update's mean was NaN or infinite: the metrics file writes
non-finite numbers as null, and a row without the key is a trainer that has no such update).
On the laboratory's rounds of 1,789 problems, healthy PPO rounds measured 0.015–0.097; PPO at
714 steps a round reached 0.49–0.74 by round 2 while its maj@1 fell from 0.13 to 0.05–0.10,
and one seed at ~90 steps a round reached 0.22 in round 3 (entropy up 0.10 → 0.14, pass@64
0.57 → 0.37): such a cell measures an update that ran away, not the trainer.

A cell is also flagged when it gave its trainer nothing to learn from: its traces average
under 2 tokens (`search_tokens` ÷ `n_traces`: the policy ends them at once, EOS first), or no
round solved a single train problem (`train_solved` 0 throughout). The laboratory's pretrained
start did the first: after the few-shot prompt it ends every sample with EOS (p 0.99), so each
round drew 256 one-token samples per problem and no correct trace. Its numbers would read as a
trainer that failed to learn; they measure a base that cannot answer.

The figures themselves are written by `search.health` and the trainers; this module only
pools and judges them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from search.expand import STOP_REASONS

MIN_SPENT, MIN_AUC, MAX_DROPPED, MAX_APPROX_KL, MIN_TRACE_TOKENS = 0.9, 0.55, 0.05, 0.15, 2.0


def _mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(numbers) if numbers else None


def _max(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def run_health(trains: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's health: means over its iterations, summed stop reasons and drops."""
    traces = sum(r.get("n_traces", 0) or 0 for r in trains)
    dropped = sum(r.get("traces_dropped", 0) or 0 for r in trains)
    sized = [r for r in trains if r.get("search_tokens") is not None and r.get("n_traces")]
    sized_traces = sum(r["n_traces"] for r in sized)
    return {
        "spent": _mean(r.get("spent_fraction_mean") for r in trains),
        "spent_min": min((r["spent_fraction_min"] for r in trains
                          if isinstance(r.get("spent_fraction_min"), (int, float))), default=None),
        **{f"stop_{s}": sum(r.get(f"stop_{s}", 0) or 0 for r in trains) for s in STOP_REASONS},
        "value_auc": _mean(r.get("value_auc") for r in trains),
        "parse_rate": _mean(r.get("eval_parse_rate") for r in trains),
        "dropped": dropped / traces if traces else None,
        "trace_tokens": sum(r["search_tokens"] for r in sized) / sized_traces if sized_traces else None,
        "solved_max": _max(r.get("train_solved") for r in trains),
        "ratio_dev": _mean(r.get("ratio_dev") for r in trains),
        "approx_kl_max": _max(r.get("approx_kl") for r in trains),
        "approx_kl_nonfinite": sum("approx_kl" in r and r["approx_kl"] is None for r in trains),
        "kl_stops": sum(bool(r.get("kl_stopped")) for r in trains),
        "pg_rounds": sum("kl_stopped" in r for r in trains),
    }


def cell_health(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the `run_health` of a cell's runs (means; stop reasons summed) and flag it."""
    keys = ("spent", "value_auc", "parse_rate", "dropped", "trace_tokens", "ratio_dev")
    out: dict[str, Any] = {k: _mean(r[k] for r in runs) for k in keys}
    out["solved_max"] = _max(r["solved_max"] for r in runs)
    out["spent_min"] = min((r["spent_min"] for r in runs if r["spent_min"] is not None), default=None)
    out["approx_kl_max"] = _max(r["approx_kl_max"] for r in runs)
    out["approx_kl_nonfinite"] = sum(r["approx_kl_nonfinite"] for r in runs)
    out["kl_stops"], out["pg_rounds"] = sum(r["kl_stops"] for r in runs), sum(r["pg_rounds"] for r in runs)
    out.update({f"stop_{s}": sum(r[f"stop_{s}"] for r in runs) for s in STOP_REASONS})
    out["flags"] = flags(out)
    return out


def flags(health: dict[str, Any]) -> list[str]:
    """Why a cell's numbers should not be trusted; empty when nothing is wrong."""
    out = []
    if health["spent"] is not None and health["spent"] < MIN_SPENT:
        out.append(f"spent {health['spent']:.2f} of its budget (< {MIN_SPENT})")
    if health["value_auc"] is not None and health["value_auc"] < MIN_AUC:
        out.append(f"evaluator value_auc {health['value_auc']:.2f} (< {MIN_AUC}): no signal")
    if health["dropped"] is not None and health["dropped"] > MAX_DROPPED:
        out.append(f"trainer dropped {health['dropped']:.0%} of traces (> {MAX_DROPPED:.0%})")
    if health["trace_tokens"] is not None and health["trace_tokens"] < MIN_TRACE_TOKENS:
        out.append(f"traces average {health['trace_tokens']:.1f} tokens (< {MIN_TRACE_TOKENS:.0f}): the policy ends "
                   "them at once")
    if health["solved_max"] == 0:
        out.append("no round solved a train problem: its trainer had no correct trace")
    if health["approx_kl_max"] is not None and health["approx_kl_max"] > MAX_APPROX_KL:
        out.append(f"update approx_kl {health['approx_kl_max']:.2f} (> {MAX_APPROX_KL}): the update moved the policy "
                   "far from the one that sampled its rollouts")
    if health["approx_kl_nonfinite"]:
        out.append(f"update approx_kl not a number in {health['approx_kl_nonfinite']} round(s): the update diverged")
    return out


def markdown(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The health table: one line per (strategy, trainer, pooled health)."""
    def num(x: float | None, fmt: str = "{:.2f}") -> str:
        return "–" if x is None else fmt.format(x)

    lines = ["| strategy | trainer | spent (min) | stops budget/exhausted/size | value_auc | parse rate | dropped "
             "| ratio_dev | approx_kl (max) | target_kl stops | flags |", "|" + "---|" * 11]
    for strategy, trainer, h in rows:
        stops = "/".join(str(h[f"stop_{s}"]) for s in STOP_REASONS)
        kl_stops = f"{h['kl_stops']}/{h['pg_rounds']}" if h["pg_rounds"] else "–"  # rounds stopped early / PG rounds
        lines.append(f"| {strategy} | {trainer} | {num(h['spent'])} ({num(h['spent_min'])}) | {stops} | "
                     f"{num(h['value_auc'])} | {num(h['parse_rate'])} | {num(h['dropped'], '{:.1%}')} | "
                     f"{num(h['ratio_dev'], '{:.1e}')} | {num(h['approx_kl_max'], '{:.3f}')} | "
                     f"{kl_stops} | "
                     f"{'; '.join(h['flags']) or 'ok'} |")
    return "\n".join(lines)
