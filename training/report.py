"""The plateau study's summary: every run of a Hydra sweep, one row per strategy × trainer.

    python -m training.run -m +experiment=plateau
    python -m training.report multirun/plateau/<date>/<time>

Each job folder of the sweep holds `.hydra/config.yaml` and `metrics.jsonl`. Seeds of one
cell are pooled into a mean and a 95% confidence interval from the t-distribution (a single
seed gives no interval: it is reported as n/a, never as ±0). Runs that crashed or stopped
early are listed in the report, not averaged in and not dropped silently.
Writes report.md, report.csv and plateau.png into the sweep folder and prints the table.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from scipy.stats import t as student_t

from training.cell_health import cell_health, run_health
from training.cell_health import markdown as health_markdown
from training.plots import read_metrics, run_choices, save_png

# (column name, metric key, how one run's curve becomes one number)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("maj@1 base", "maj@1", "base"), ("maj@1 final", "maj@1", "final"), ("maj@1 best", "maj@1", "best"),
    ("pass@k final", "pass@k", "final"), ("pass@k best", "pass@k", "best"),
    ("distinct final", "distinct_correct", "final"), ("distinct best", "distinct_correct", "best"),
    ("tokens", "cumulative_tokens", "final"),
)
PLATEAU_METRICS = ("maj@1", "pass@k")


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


@dataclass
class Run:
    """One job of the sweep. `problem` is None for a complete run, else why it is left out."""

    path: Path
    strategy: str = "?"
    trainer: str = "?"
    seed: Any = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    trains: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    @property
    def cell(self) -> tuple[str, str]:
        return self.strategy, self.trainer

    def summary(self, key: str, how: str) -> float | None:
        values = [r[key] for r in self.evals if isinstance(r.get(key), (int, float))]
        if not values:
            return None
        return {"base": values[0], "final": values[-1], "best": max(values)}[how]


def _group_name(cfg: DictConfig, choices: dict[str, Any], group: str) -> str:
    """The name a person knows a config group choice by: its `name`, the choice Hydra
    recorded, or the class of its `_target_`."""
    name = OmegaConf.select(cfg, f"{group}.name", default=None, throw_on_resolution_failure=False)
    if isinstance(name, str):
        return name
    if isinstance(choices.get(group), str):
        return choices[group]
    target = OmegaConf.select(cfg, f"{group}._target_", default=None, throw_on_resolution_failure=False)
    return str(target).rsplit(".", 1)[-1] if target else "?"


def read_run(job: Path) -> Run:
    """A job folder as a `Run`; never raises: what is wrong with it goes into `problem`."""
    run = Run(job)
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        hydra_file = job / ".hydra" / "hydra.yaml"
        choices = {}
        if hydra_file.is_file():
            recorded = OmegaConf.to_container(OmegaConf.load(hydra_file))
            choices = recorded.get("hydra", {}).get("runtime", {}).get("choices", {})
    except Exception as e:  # noqa: BLE001 - any unreadable config is reported, not raised
        run.problem = f"unreadable .hydra config ({type(e).__name__}: {e})"
        return run
    run.strategy, run.trainer = _group_name(cfg, choices, "search"), _group_name(cfg, choices, "trainer")
    run.seed = OmegaConf.select(cfg, "seed", default=None, throw_on_resolution_failure=False)
    metrics = job / "metrics.jsonl"
    if not metrics.is_file():
        run.problem = "crashed: no metrics.jsonl"
        return run
    try:
        rows = read_metrics(metrics)
    except ValueError as e:
        run.problem = f"unreadable metrics: {e}"
        return run
    run.evals = sorted((r for r in rows if r.get("kind") == "eval" and isinstance(r.get("iteration"), int)),
                       key=lambda r: r["iteration"])
    run.trains = [r for r in rows if r.get("kind") == "train"]
    expected = OmegaConf.select(cfg, "iterations", default=None, throw_on_resolution_failure=False)
    last = run.evals[-1]["iteration"] if run.evals else None
    if last is None:
        run.problem = "crashed: no evaluation in metrics.jsonl"
    elif isinstance(expected, int) and last < expected:
        run.problem = f"incomplete: last evaluation at iteration {last} of {expected}"
    return run


def collect_runs(sweep_dir: str | Path) -> list[Run]:
    """Every Hydra job folder (one holding `.hydra/config.yaml`) below `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")})
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no Hydra job folders (looked for */.hydra/config.yaml)")
    return [read_run(job) for job in jobs]


def _k_label(runs: list[Run]) -> str | None:
    ks = {r["k"] for run in runs for r in run.evals if isinstance(r.get("k"), int)}
    return str(ks.pop()) if len(ks) == 1 else None


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per strategy × trainer cell of the complete runs: strategy, trainer, seeds,
    and for each column `(mean, ci half-width or None)`, or None where no run has the metric."""
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.problem is None:
            cells[run.cell].append(run)
    table = []
    for (strategy, trainer), members in sorted(cells.items()):
        row: dict[str, Any] = {"strategy": strategy, "trainer": trainer, "seeds": len(members)}
        for column, key, how in COLUMNS:
            values = [v for v in (m.summary(key, how) for m in members) if v is not None]
            row[column] = mean_ci(values) if values else None
        table.append(row)
    return table


def health_rows(runs: list[Run]) -> list[tuple[str, str, dict[str, Any]]]:
    """(strategy, trainer, pooled health with flags) per cell of the complete runs."""
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.problem is None:
            cells[run.cell].append(run)
    return [(s, t, cell_health([run_health(m.trains) for m in members])) for (s, t), members in sorted(cells.items())]


def _cell_text(value: tuple[float, float | None] | None, integer: bool) -> str:
    if value is None:
        return "–"
    mean, half = value
    fmt = (lambda x: f"{x:,.0f}") if integer else (lambda x: f"{x:.3f}")
    return f"{fmt(mean)} ± {'n/a' if half is None else fmt(half)}"


def _header(column: str, k: str | None) -> str:
    return column.replace("@k", f"@{k}") if k else column


def markdown_table(table: list[dict[str, Any]], k: str | None) -> str:
    heads = ["strategy", "trainer", "seeds", *(_header(c, k) for c, _, _ in COLUMNS)]
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
    writer.writerow(["strategy", "trainer", "seeds", *(f"{_header(c, k)} {part}" for c, _, _ in COLUMNS
                                                       for part in ("mean", "ci95"))])
    for row in table:
        values = []
        for column, _, _ in COLUMNS:
            mean, half = row[column] if row[column] is not None else ("", "")
            values += [_csv_number(mean), "n/a" if half is None else _csv_number(half)]
        writer.writerow([row["strategy"], row["trainer"], row["seeds"], *values])
    return out.getvalue()


def plot_plateau(runs: list[Run], path: Path, k: str | None) -> bool:
    """maj@1 and pass@k against iteration and cumulative tokens, one line per cell, the
    band its 95% CI over seeds. False (and no file) when no run is complete."""
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.problem is None:
            cells[run.cell].append(run)
    if not cells:
        return False
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(len(PLATEAU_METRICS), 2, squeeze=False)
    for (strategy, trainer), members in sorted(cells.items()):
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
            ax.set(xlabel=x_label, ylabel=_header(metric, k), ylim=(-0.02, 1.02))
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
    k = _k_label(runs)
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
