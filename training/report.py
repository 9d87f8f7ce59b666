"""The plateau study's summary: every run of a Hydra sweep, one row per strategy × trainer.

    python -m training.run -m +experiment=plateau
    python -m training.report multirun/plateau/<date>/<time>

Each job folder of the sweep holds `.hydra/config.yaml` and `metrics.jsonl`. Seeds of one
cell are pooled into a mean and a 95% confidence interval from the t-distribution (a single
seed gives no interval: it is reported as n/a, never as ±0). Runs that crashed or stopped
early are listed in the report, not averaged in and not dropped silently.
Writes report.md, report.csv and plateau.png into the sweep folder and prints the table.

By concept: reading the runs is `training.runs`, the pooled table (markdown, CSV) is
`training.tables`; this module draws the plateau figure and writes the report.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from training.cell_health import markdown as health_markdown
from training.plots import save_png
from training.runs import Run, collect_runs, complete_cells, run_choices
from training.tables import csv_text, header, health_rows, k_label, markdown_table, mean_ci, summarise

PLATEAU_METRICS = ("maj@1", "pass@k")


def plot_plateau(runs: list[Run], path: Path, k: str | None) -> bool:
    """maj@1 and pass@k against iteration and cumulative tokens, one line per cell, the
    band its 95% CI over seeds. False (and no file) when no run is complete."""
    cells = complete_cells(runs)
    if not cells:
        return False
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(len(PLATEAU_METRICS), 2, squeeze=False)
    for (strategy, trainer), members in cells.items():
        iterations = sorted(set.intersection(*({r["iteration"] for r in m.evals} for m in members)))
        for row, metric in enumerate(PLATEAU_METRICS):
            xs_it, xs_tok, means, lows, highs = [], [], [], [], []
            for it in iterations:
                at = [next(r for r in m.evals if r["iteration"] == it) for m in members]
                values = [r[metric] for r in at if isinstance(r.get(metric), (int, float))]
                tokens = [r["cumulative_tokens"] for r in at if isinstance(r.get("cumulative_tokens"), (int, float))]
                if not values or len(tokens) != len(at):
                    continue
                mean, half = mean_ci(values)
                xs_it.append(it)
                xs_tok.append(statistics.fmean(tokens))
                means.append(mean)
                lows.append(mean - (half or 0.0))
                highs.append(mean + (half or 0.0))
            for col, xs in enumerate((xs_it, xs_tok)):
                (line,) = axes[row][col].plot(xs, means, marker="o", label=f"{strategy} × {trainer}")
                axes[row][col].fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2)
    for row, metric in enumerate(PLATEAU_METRICS):
        for col, x_label in enumerate(("iteration", "cumulative generated tokens")):
            ax = axes[row][col]
            ax.set(xlabel=x_label, ylabel=header(metric, k), ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
        axes[row][0].xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize="small", title="strategy × trainer")
    fig.suptitle(f"plateau on {_shared_choices(runs)}: mean over seeds, band = 95% CI")
    save_png(fig, path)
    return True


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


def write_report(sweep_dir: str | Path) -> Report:
    """Write report.md, report.csv and (when any run is complete) plateau.png into `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir)
    k = k_label(runs)
    table = summarise(runs)
    md_table = markdown_table(table, k)
    health = health_rows(runs)
    left_out = [r for r in runs if r.problem is not None]
    files = [sweep_dir / "report.md", sweep_dir / "report.csv"]
    has_figure = plot_plateau(runs, sweep_dir / "plateau.png", k)
    lines = [f"# Plateau report: {sweep_dir.name}", "",
             f"{len(runs) - len(left_out)} complete runs of {len(runs)}. Cells: mean ± half-width of the 95% "
             "t confidence interval over seeds (n/a with one seed); 'final' is the last evaluation, "
             "'best' the best evaluation of each run; tokens are cumulative generated tokens.", "", md_table, "",
             "## Health", "", "Averaged over each cell's runs and iterations (`training/cell_health.py`); a flag "
             "means the cell does not measure what its name says.", "", health_markdown(health), ""]
    if left_out:
        lines += ["## Runs left out", "", *(f"- {_left_out_line(r, sweep_dir)}" for r in left_out), ""]
    if has_figure:
        lines += ["![plateau curves](plateau.png)", ""]
        files.append(sweep_dir / "plateau.png")
    files[0].write_text("\n".join(lines), encoding="utf-8")
    files[1].write_text(csv_text(table, k), encoding="utf-8")
    return Report(md_table, left_out, files, health)


def _left_out_line(run: Run, sweep_dir: Path) -> str:
    return f"`{run.path.relative_to(sweep_dir)}` ({run.strategy} × {run.trainer}, seed {run.seed}): {run.problem}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.report <multirun folder>", file=sys.stderr)
        return 2
    try:
        report = write_report(args[0])
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown_table)
    flagged = [(s, t, h["flags"]) for s, t, h in report.health if h["flags"]]
    for strategy, trainer, why in flagged:
        print(f"FLAG {strategy} × {trainer}: {'; '.join(why)}")
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
