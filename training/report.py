"""The plateau study's summary: every run of one or more Hydra sweeps, one row per cell.

    python -m training.run -m +experiment=plateau_lab hydra/launcher=joblib2
    python -m training.report multirun/plateau_lab/<date>_<time> [<another sweep> ...]

Several sweeps of one study (the strategy grid and the fidelity grid, say) are pooled into
one report, written into the first folder. Each job folder holds `.hydra/config.yaml` and
`metrics.jsonl`; a cell is strategy × trainer label (`training.runs.Run.label`: `ppo+dense`,
`ei@pretrained` keep variants apart). Seeds of one cell are pooled into a mean and a 95% t
interval (a single seed gives no interval: n/a, never ±0). Runs that crashed or stopped
early are listed, not averaged in and not dropped silently.

report.md has, in order: the pooled table; the fidelity table (`training.fidelity`: does
the testbed reproduce the published findings?) with its rules; the answer
(`training.verdicts`: does each strategy break the plateau?); the health table
(`training.cell_health`); the runs left out; the figures (`training.sweep_figures`:
plateau.png, and passk.png and slices.png when the rows carry the laboratory's metrics).
report.csv holds the pooled table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import fidelity, verdicts
from training.cell_health import markdown as health_markdown
from training.runs import Run, collect_runs, complete_cells, run_choices
from training.sweep_figures import plot_passk, plot_plateau, plot_slices
from training.tables import csv_text, health_rows, k_label, markdown_table, summarise

__all__ = ["Report", "collect_runs", "main", "summarise", "write_report"]

FIGURES = (("plateau.png", "plateau curves"), ("passk.png", "pass@k of base and final"),
           ("slices.png", "in and beyond support"))


def _shared_choices(runs: list[Run]) -> str:
    """`countdown · tiny`: the task and policy of the complete runs (each joined by `/` when they differ)."""
    choices = [run_choices(run.path) for run in runs if run.problem is None]
    return " · ".join("/".join(sorted({c[g] for c in choices if g in c})) or f"? {g}" for g in ("task", "policy"))


@dataclass
class Report:
    markdown_table: str
    left_out: list[Run]
    files: list[Path]
    health: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    findings: list[fidelity.Finding] = field(default_factory=list)
    answer: list[verdicts.StrategyRow] = field(default_factory=list)


def _figures(runs: list[Run], out: Path, k: str | None) -> list[Path]:
    cells = complete_cells(runs)
    drawn = [plot_plateau(cells, out / "plateau.png", k, _shared_choices(runs)),
             plot_passk(cells, out / "passk.png"), plot_slices(cells, out / "slices.png")]
    return [out / name for (name, _), ok in zip(FIGURES, drawn) if ok]


def _sections(report: Report, runs: list[Run], sweeps: list[Path]) -> list[str]:
    out = sweeps[0]
    pooled = f" (pooled with {', '.join(f'`{os.path.relpath(s, out)}`' for s in sweeps[1:])})" if sweeps[1:] else ""
    lines = [f"# Plateau report: {out.name}{pooled}", "",
             f"{len(runs) - len(report.left_out)} complete runs of {len(runs)}. Cells: mean ± half-width of the 95% "
             "t confidence interval over seeds (n/a with one seed); 'final' is the last evaluation, "
             "'best' the best evaluation of each run; tokens are cumulative generated tokens.", "",
             report.markdown_table, "",
             "## Fidelity: does the testbed reproduce the published findings?", "",
             "The sampling cells (RL without search) against six findings (`training/fidelity.py`).", "",
             fidelity.markdown(report.findings), "", fidelity.rules_text(), "",
             "## The answer: does a strategy break the plateau?", "",
             "Final evaluation, strategy value (Δ vs sampling with the same trainer ± half-width of the Welch 95% "
             "interval over seeds); sparse reward, SFT initialisation (`training/verdicts.py`). "
             "⚠ marks tokens more than 10% off sampling's.", "",
             verdicts.markdown(report.answer), "",
             "## Health", "", "Averaged over each cell's runs and iterations (`training/cell_health.py`); a flag "
             "means the cell does not measure what its name says.", "", health_markdown(report.health), ""]
    if report.left_out:
        lines += ["## Runs left out", "", *(f"- {_left_out_line(r, out)}" for r in report.left_out), ""]
    drawn = {p.name for p in report.files}
    figures = [f"![{alt}]({name})" for name, alt in FIGURES if name in drawn]
    return lines + (["## Figures", "", *figures, ""] if figures else [])


def write_report(*sweep_dirs: str | Path) -> Report:
    """Pool the runs of `sweep_dirs` and write report.md, report.csv and the figures into the first."""
    sweeps = [Path(s) for s in sweep_dirs]
    runs = collect_runs(*sweeps)
    k = k_label(runs)
    table = summarise(runs)
    health = health_rows(runs)
    cells = complete_cells(runs)
    flags = {(s, t): h["flags"] for s, t, h in health}
    report = Report(markdown_table(table, k), [r for r in runs if r.problem is not None],
                    [sweeps[0] / "report.md", sweeps[0] / "report.csv"], health, fidelity.fidelity(cells, flags),
                    verdicts.answer(cells, flags))
    report.files += _figures(runs, sweeps[0], k)
    report.files[0].write_text("\n".join(_sections(report, runs, sweeps)), encoding="utf-8")
    report.files[1].write_text(csv_text(table, k), encoding="utf-8")
    return report


def _left_out_line(run: Run, out: Path) -> str:
    """The run's folder relative to the report's (so the link works from report.md)."""
    return f"`{os.path.relpath(run.path, out)}` ({run.strategy} × {run.label}, seed {run.seed}): {run.problem}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m training.report <multirun folder> [<multirun folder> ...]  "
              "(several are pooled into one report, written into the first)", file=sys.stderr)
        return 2
    try:
        report = write_report(*args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown_table, "", fidelity.markdown(report.findings), "", verdicts.markdown(report.answer),
          sep="\n")
    for strategy, trainer, h in report.health:
        if h["flags"]:
            print(f"FLAG {strategy} × {trainer}: {'; '.join(h['flags'])}")
    if report.left_out:
        print(f"\nleft out ({len(report.left_out)} runs):")
        for run in report.left_out:
            print(f"  {_left_out_line(run, Path(args[0]))}")
    print()
    for path in report.files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
