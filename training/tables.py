"""The report's table: each strategy × trainer cell pooled over seeds into a mean and the
half-width of its 95% t confidence interval (scipy's t quantiles), as markdown and CSV.
A single seed gives no interval: it is written n/a, never ±0."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any

from scipy.stats import t as student_t

from training.cell_health import cell_health, run_health
from training.runs import Run, complete_cells

# (column name, metric key, how one run's curve becomes one number)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("maj@1 base", "maj@1", "base"), ("maj@1 final", "maj@1", "final"), ("maj@1 best", "maj@1", "best"),
    ("pass@k final", "pass@k", "final"), ("pass@k best", "pass@k", "best"),
    ("distinct final", "distinct_correct", "final"), ("distinct best", "distinct_correct", "best"),
    ("tokens", "cumulative_tokens", "final"),
)

def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t: P(|T| <= t) = confidence."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(student_t.ppf((1 + confidence) / 2, df))


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean and the half-width of its t confidence interval; None when one value gives no spread."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, t_critical(len(values) - 1, confidence) * statistics.stdev(values) / math.sqrt(len(values))


def k_label(runs: list[Run]) -> str | None:
    ks = {r["k"] for run in runs for r in run.evals if isinstance(r.get("k"), int)}
    return str(ks.pop()) if len(ks) == 1 else None


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per strategy × trainer cell of the complete runs: strategy, trainer, seeds,
    and for each column `(mean, ci half-width or None)`, or None where no run has the metric."""
    table = []
    for (strategy, trainer), members in complete_cells(runs).items():
        row: dict[str, Any] = {"strategy": strategy, "trainer": trainer, "seeds": len(members)}
        for column, key, how in COLUMNS:
            values = [v for v in (m.summary(key, how) for m in members) if v is not None]
            row[column] = mean_ci(values) if values else None
        table.append(row)
    return table


def health_rows(runs: list[Run]) -> list[tuple[str, str, dict[str, Any]]]:
    """(strategy, trainer, pooled health with flags) per cell of the complete runs."""
    return [(s, t, cell_health([run_health(m.trains) for m in members])) for (s, t), members in complete_cells(runs).items()]


def _cell_text(value: tuple[float, float | None] | None, integer: bool) -> str:
    if value is None:
        return "–"
    mean, half = value
    fmt = (lambda x: f"{x:,.0f}") if integer else (lambda x: f"{x:.3f}")
    return f"{fmt(mean)} ± {'n/a' if half is None else fmt(half)}"


def header(column: str, k: str | None) -> str:
    return column.replace("@k", f"@{k}") if k else column


def markdown_table(table: list[dict[str, Any]], k: str | None) -> str:
    heads = ["strategy", "trainer", "seeds", *(header(c, k) for c, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in table:
        cells = [row["strategy"], row["trainer"], str(row["seeds"]),
                 *(_cell_text(row[c], key == "cumulative_tokens") for c, key, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _csv_number(x: float | str) -> float | str:
    return round(x, 6) if isinstance(x, float) else x


def csv_text(table: list[dict[str, Any]], k: str | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["strategy", "trainer", "seeds", *(f"{header(c, k)} {part}" for c, _, _ in COLUMNS
                                                       for part in ("mean", "ci95"))])
    for row in table:
        values = []
        for column, _, _ in COLUMNS:
            mean, half = row[column] if row[column] is not None else ("", "")
            values += [_csv_number(mean), "n/a" if half is None else _csv_number(half)]
        writer.writerow([row["strategy"], row["trainer"], row["seeds"], *values])
    return out.getvalue()


