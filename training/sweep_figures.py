"""The report's figures of a whole study, one line per cell (strategy × trainer label).

* plateau.png: maj@1 and pass@k against iteration and against cumulative generated
  tokens (equal compute), the band the 95% t interval over seeds.
* passk.png (laboratory rows only): one panel per trainer label, the pass@k curve of the
  base (iteration 0) and of each strategy's final iteration, from `lab_counts` pooled over
  seeds (the problems of every seed concatenated; the base once per seed, since every cell
  of a trainer starts from the same model), on a log2 k axis. The band is the bootstrap
  over those pooled problems (`training.instruments.curve_band`): a seed's repeat of a
  problem counts as another problem, so it is narrower than a band over seeds would be.
  This is Yue et al.'s picture: RL ahead at small k, the base catching up at large k.
* slices.png (laboratory rows only): in_support and beyond_support pass@1 and pass@K
  against cumulative tokens, the band the 95% t interval over seeds: whether anything
  leaves the support the SFT data demonstrated.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from training.instruments import curve_band, pass_at_k_curve, powers_of_two
from training.plots import save_png
from training.runs import Run, pass_ks
from training.tables import mean_ci

Cells = dict[tuple[str, str], list[Run]]
PLATEAU_METRICS = ("maj@1", "pass@k")


def seed_band(members: list[Run], metric: str) -> dict[str, list[float]]:
    """Over the iterations at which every run has `metric` (the laboratory's may be measured
    only every few iterations, `eval.lab.every`): iteration, mean cumulative tokens, and the
    mean over seeds with its 95% t band (no band with one seed)."""
    out: dict[str, list[float]] = {"iteration": [], "tokens": [], "mean": [], "low": [], "high": []}
    iterations = sorted(set.intersection(*({r["iteration"] for r in m.evals} for m in members)))
    for it in iterations:
        at = [next(r for r in m.evals if r["iteration"] == it) for m in members]
        values = [r[metric] for r in at if isinstance(r.get(metric), (int, float))]
        tokens = [r["cumulative_tokens"] for r in at if isinstance(r.get("cumulative_tokens"), (int, float))]
        if not values or len(values) != len(at) or len(tokens) != len(at):
            continue
        mean, half = mean_ci(values)
        for key, value in zip(out, (it, statistics.fmean(tokens), mean, mean - (half or 0.0), mean + (half or 0.0))):
            out[key].append(value)
    return out


def draw_band(ax: Axes, xs: list[float], band: dict[str, list[float]], label: str, **style: Any) -> None:
    (line,) = ax.plot(xs, band["mean"], marker="o", label=label, **style)
    ax.fill_between(xs, band["low"], band["high"], color=line.get_color(), alpha=0.2)


def plot_plateau(cells: Cells, path: Path, k: str | None, title: str) -> bool:
    """plateau.png (see the module docstring); False (and no file) without cells."""
    if not cells:
        return False
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(len(PLATEAU_METRICS), 2, squeeze=False)
    for (strategy, trainer), members in cells.items():
        for row, metric in enumerate(PLATEAU_METRICS):
            band = seed_band(members, metric)
            for col, x in enumerate(("iteration", "tokens")):
                draw_band(axes[row][col], band[x], band, f"{strategy} × {trainer}")
    for row, metric in enumerate(PLATEAU_METRICS):
        for col, x_label in enumerate(("iteration", "cumulative generated tokens")):
            axes[row][col].set(xlabel=x_label, ylabel=metric.replace("@k", f"@{k}") if k else metric,
                               ylim=(-0.02, 1.02))
            axes[row][col].grid(alpha=0.3)
        axes[row][0].xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize="small", title="strategy × trainer")
    fig.suptitle(f"plateau on {title}: mean over seeds, band = 95% CI")
    save_png(fig, path)
    return True


def lab_cells(cells: Cells) -> Cells:
    """The cells whose runs carry the laboratory's metrics (`lab_counts`)."""
    return {c: runs for c, runs in cells.items() if all(any("lab_counts" in row for row in r.evals) for r in runs)}


def pooled_counts(runs: list[Run], final: bool) -> list[tuple[int, int]]:
    """(samples, correct) of every problem of the runs' first (or last) laboratory row."""
    out = []
    for run in runs:
        rows = [row for row in run.evals if isinstance(row.get("lab_counts"), list)]
        out += [(int(n), int(c)) for n, c, *_ in rows[-1 if final else 0]["lab_counts"]]
    return out


def draw_curve(ax: Axes, counts: list[tuple[int, int]], label: str, **style: Any) -> None:
    ks = powers_of_two(max(n for n, _ in counts))
    low, high = curve_band(counts, ks)
    (line,) = ax.plot(ks, pass_at_k_curve(counts, ks), marker="o", label=label, **style)
    ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.2)


def plot_passk(cells: Cells, path: Path) -> bool:
    """passk.png (see the module docstring); False (and no file) without laboratory rows."""
    lab = lab_cells(cells)
    trainers = sorted({t for _, t in lab})
    if not trainers:
        return False
    fig = Figure(figsize=(6 * len(trainers), 4.5))
    for ax, trainer in zip(fig.subplots(1, len(trainers), squeeze=False)[0], trainers):
        members = {s: runs for (s, t), runs in lab.items() if t == trainer}
        by_seed = {id(r) if r.seed is None else r.seed: r for runs in members.values() for r in runs}
        one_per_seed = list(by_seed.values())
        draw_curve(ax, pooled_counts(one_per_seed, final=False), "base (iteration 0)", color="black",
                   linestyle="--", zorder=3)
        for strategy, runs in members.items():
            draw_curve(ax, pooled_counts(runs, final=True), f"{strategy} final")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k (samples per problem)", ylabel="pass@k (all problems)", ylim=(-0.02, 1.02), title=trainer)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("pass@k of the base and the final model, pooled over seeds; band = bootstrap 95% over problems")
    save_png(fig, path)
    return True


def plot_slices(cells: Cells, path: Path) -> bool:
    """slices.png (see the module docstring); False (and no file) without laboratory rows."""
    lab = lab_cells(cells)
    ks = pass_ks([row for runs in lab.values() for r in runs for row in r.evals])
    if not ks:
        return False
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2, squeeze=False)
    for (strategy, trainer), members in lab.items():
        for row, k in enumerate((1, ks[-1])):
            for col, slice_name in enumerate(("in_support", "beyond_support")):
                band = seed_band(members, f"{slice_name}/pass@{k}")
                draw_band(axes[row][col], band["tokens"], band, f"{strategy} × {trainer}")
    for row, k in enumerate((1, ks[-1])):
        for col, slice_name in enumerate(("in_support", "beyond_support")):
            axes[row][col].set(xlabel="cumulative generated tokens", ylabel=f"{slice_name} pass@{k}",
                               ylim=(-0.02, 1.02))
            axes[row][col].grid(alpha=0.3)
    axes[0][0].legend(fontsize="small", title="strategy × trainer")
    fig.suptitle("inside and beyond the SFT data's support: mean over seeds, band = 95% CI")
    save_png(fig, path)
    return True
