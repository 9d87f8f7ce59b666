"""Curves of one run, drawn from its `metrics.jsonl`, as PNG files (Agg, no display).

    python -m training.plots <run folder>     # writes <run folder>/plots/*.png

Each quantity is drawn twice, against the iteration and against the cumulative number of
generated tokens, because strategies are compared at equal compute, not equal iterations.
metrics.jsonl holds one JSON object per line, `{"iteration", "kind": "train"|"eval",
"cumulative_tokens", ...}`; eval lines carry maj@1, maj@k, pass@k, k and optionally rerank@k,
distinct_correct, eval_tokens; train lines carry train_reward, search_tokens, n_traces, loss.
A key a line lacks is simply not drawn.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from search.run_folder import is_number as _is_number, read_metrics

ACCURACY = ("maj@1", "maj@k", "pass@k", "rerank@k")
# file stem -> (line kind, keys drawn as one line each, y-axis label)
FIGURES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "accuracy": ("eval", ACCURACY, "fraction of problems solved"),
    "distinct_correct": ("eval", ("distinct_correct",), "distinct correct solutions per problem"),
    "train_reward": ("train", ("train_reward",), "mean reward of searched traces"),
}
X_AXES = {"iteration": ("iteration", "iteration"), "tokens": ("cumulative_tokens", "cumulative generated tokens")}
def points(rows: list[dict[str, Any]], kind: str, x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of the `kind` rows that have finite values for both keys, sorted by x."""
    pairs = sorted((r[x_key], r[y_key]) for r in rows if r.get("kind") == kind
                   and _is_number(r.get(x_key)) and _is_number(r.get(y_key)) and math.isfinite(r[y_key]))
    return [x for x, _ in pairs], [y for _, y in pairs]


def _label(rows: list[dict[str, Any]], key: str) -> str:
    """`maj@k` → `maj@8` when every eval line used the same k."""
    ks = {r["k"] for r in rows if r.get("kind") == "eval" and _is_number(r.get("k"))}
    return key.replace("@k", f"@{ks.pop()}") if "@k" in key and len(ks) == 1 else key


def save_png(fig: Figure, path: Path) -> None:
    """Write through a temporary name so a killed run never leaves a truncated image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw every figure the run's metrics allow into `<run_dir>/plots/`; return the files."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: no metrics file (is {run_dir} a run folder?)")
    rows = read_metrics(metrics)
    written = []
    for stem, (kind, keys, y_label) in FIGURES.items():
        for axis, (x_key, x_label) in X_AXES.items():
            lines = [(_label(rows, key), *points(rows, kind, x_key, key)) for key in keys]
            lines = [line for line in lines if line[1]]
            if not lines:
                continue
            fig = Figure(figsize=(6, 4))
            ax = fig.add_subplot()
            for label, xs, ys in lines:
                ax.plot(xs, ys, marker="o", label=label)
            ax.set(xlabel=x_label, ylabel=y_label, title=f"{run_dir.name}: {stem.replace('_', ' ')}")
            if stem == "accuracy":
                ax.set_ylim(-0.02, 1.02)
            if axis == "iteration":
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend()
            path = run_dir / "plots" / f"{stem}_vs_{axis}.png"
            save_png(fig, path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.plots <run folder>", file=sys.stderr)
        return 2
    try:
        written = plot_run(args[0])
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
