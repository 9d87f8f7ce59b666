"""Curves of one run, drawn from its `metrics.jsonl`, as PNG files (Agg, no display).

    python -m training.plots <run folder> [--zoom]     # writes <run folder>/plots/*.png

Each quantity is drawn twice, against the iteration and against the cumulative number of
generated tokens, because strategies are compared at equal compute, not equal iterations.
metrics.jsonl holds one JSON object per line, `{"iteration", "kind": "train"|"eval",
"cumulative_tokens", ...}`; eval lines carry maj@1, maj@k, pass@k, k and optionally rerank@k,
distinct_correct, eval_tokens; train lines carry train_reward, search_tokens, n_traces, loss.
A key a line lacks is simply not drawn.

Titles name what the run was: task, policy, search strategy, trainer and seed, read from the
choices Hydra recorded in `.hydra/hydra.yaml` (a folder without them is titled by its name).
Fractions (accuracies, the mean reward) are drawn on 0-1 and distinct solutions from 0, so
a wobble of a few problems does not look like a trend; `--zoom` fits the axes to the data.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from training.runs import GROUPS, is_number, read_metrics, run_choices

ACCURACY = ("maj@1", "maj@k", "pass@k", "rerank@k", "trace_valid@k")
# file stem -> (line kind, keys drawn as one line each, y-axis label, y range unless zoomed: top None = fit)
FIGURES: dict[str, tuple[str, tuple[str, ...], str, tuple[float, float | None]]] = {
    "accuracy": ("eval", ACCURACY, "fraction of problems solved", (0.0, 1.0)),
    "distinct_correct": ("eval", ("distinct_correct",), "distinct correct solutions per problem", (0.0, None)),
    "train_reward": ("train", ("train_reward",), "mean reward of searched traces", (0.0, 1.0)),
}
X_AXES = {"iteration": ("iteration", "iteration"), "tokens": ("cumulative_tokens", "cumulative generated tokens")}


def run_title(run_dir: str | Path) -> str:
    """`countdown · tiny · mcts · ei · seed 0`, or the folder's name when Hydra recorded nothing."""
    choices = run_choices(run_dir)
    parts = [choices[g] for g in GROUPS if g in choices] + ([f"seed {choices['seed']}"] if "seed" in choices else [])
    return " · ".join(parts) or Path(run_dir).name
def points(rows: list[dict[str, Any]], kind: str, x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of the `kind` rows that have finite values for both keys, sorted by x."""
    pairs = sorted((r[x_key], r[y_key]) for r in rows if r.get("kind") == kind
                   and is_number(r.get(x_key)) and is_number(r.get(y_key)) and math.isfinite(r[y_key]))
    return [x for x, _ in pairs], [y for _, y in pairs]


def _label(rows: list[dict[str, Any]], key: str) -> str:
    """`maj@k` → `maj@8` when every eval line used the same k."""
    ks = {r["k"] for r in rows if r.get("kind") == "eval" and is_number(r.get("k"))}
    return key.replace("@k", f"@{ks.pop()}") if "@k" in key and len(ks) == 1 else key


def save_png(fig: Figure, path: Path) -> None:
    """Write through a temporary name so a killed run never leaves a truncated image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def draw(rows: list[dict[str, Any]], stem: str, axis: str, title: str, zoom: bool = False) -> Figure | None:
    """Figure `stem` of FIGURES against `axis` of X_AXES, or None when no row has its keys."""
    kind, keys, y_label, (low, high) = FIGURES[stem]
    x_key, x_label = X_AXES[axis]
    lines = [(_label(rows, key), *points(rows, kind, x_key, key)) for key in keys]
    lines = [line for line in lines if line[1]]
    if not lines:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, xs, ys in lines:
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xlabel=x_label, ylabel=y_label, title=f"{title}\n{stem.replace('_', ' ')}")
    if not zoom:
        ax.set_ylim(low - 0.02, None if high is None else high + 0.02)
    if axis == "iteration":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_run(run_dir: str | Path, zoom: bool = False) -> list[Path]:
    """Draw every figure the run's metrics allow into `<run_dir>/plots/`; return the files.
    `zoom` fits the y axes to the data instead of 0-1 (0 and up for counts)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: no metrics file (is {run_dir} a run folder?)")
    rows = read_metrics(metrics)
    title = run_title(run_dir)
    written = []
    for stem in FIGURES:
        for axis in X_AXES:
            fig = draw(rows, stem, axis, title, zoom)
            if fig is not None:
                path = run_dir / "plots" / f"{stem}_vs_{axis}.png"
                save_png(fig, path)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    zoom = "--zoom" in args
    args = [a for a in args if a != "--zoom"]
    if len(args) != 1:
        print("usage: python -m training.plots <run folder> [--zoom]", file=sys.stderr)
        return 2
    try:
        written = plot_run(args[0], zoom)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
