"""The layout of a run folder, and atomic writes into it.

    metrics.jsonl                 one JSON object per line: {"iteration", "kind": "train"|"eval", ...}
    traces/iter_NNN.jsonl         every trace searched in iteration NNN, with provenance
    trees/iter_NNN/<problem>.json a sample of that iteration's search trees (SearchTree JSON)
    checkpoints/iter_NNN/         plain HF model folder + trainer state after iteration NNN

Every file is written to a temporary name and renamed into place, so a killed run never
leaves a half-written file that a resume would trust.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from search.result import SearchResult


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite(x: Any) -> Any:
    """A copy of `x` that strict JSON readers accept: NaN and infinities become None (EI's
    loss is NaN when no trace was correct), NumPy and 0-d tensor scalars plain numbers."""
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy.float32, numpy.int64, torch scalars
        return finite(x.item())
    return x


def strict_json(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` of `finite(obj)`; raises rather than write NaN."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


NUMERIC_KEYS = frozenset({"iteration", "cumulative_tokens", "k", "eval_tokens", "search_tokens", "n_traces", "loss",
                          "maj@1", "maj@k", "pass@k", "pass@1", "rerank@k", "trace_valid@k", "distinct_correct",
                          "train_reward"})


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file; blank lines are skipped, anything else that is not
    a JSON object with numeric metric values raises ValueError naming file and line."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, found {type(row).__name__}")
        for key in NUMERIC_KEYS & row.keys():
            if row[key] is not None and not is_number(row[key]):
                raise ValueError(f"{path}:{n}: {key!r} must be a number, found {row[key]!r}")
        rows.append(row)
    return rows


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:100]


class RunFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.root / "metrics.jsonl"

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rewrite the whole metrics file (it is small), atomically; NaN is written as null."""
        write_atomic(self.metrics_path, "".join(strict_json(r) + "\n" for r in rows))

    def write_traces(self, iteration: int, results: list[SearchResult]) -> None:
        lines = []
        for r in results:
            for t in r.traces():
                lines.append(json.dumps({
                    "iteration": iteration, "strategy": t.meta.get("strategy", ""), "problem_id": t.problem_id,
                    "reward": t.reward, "answer": t.answer, "tokens": t.tokens, "finish_reason": t.finish_reason,
                    "prompt": t.prompt, "completion": t.text}))
        write_atomic(self.root / "traces" / f"iter_{iteration:03d}.jsonl", "".join(x + "\n" for x in lines))

    def write_trees(self, iteration: int, results: list[SearchResult], limit: int) -> None:
        for r in results[:limit]:
            write_atomic(self.root / "trees" / f"iter_{iteration:03d}" / f"{_safe_name(r.problem.id)}.json", r.tree.dumps())

    def checkpoint_dir(self, iteration: int) -> Path:
        return self.root / "checkpoints" / f"iter_{iteration:03d}"
