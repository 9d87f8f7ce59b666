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
        write_atomic(self.traces_file(iteration), "".join(x + "\n" for x in lines))

    def traces_file(self, iteration: int) -> Path:
        return self.root / "traces" / f"iter_{iteration:03d}.jsonl"

    def write_trees(self, iteration: int, results: list[SearchResult], limit: int) -> None:
        for r in results[:limit]:
            write_atomic(self.root / "trees" / f"iter_{iteration:03d}" / f"{_safe_name(r.problem.id)}.json", r.tree.dumps())

    def checkpoint_dir(self, iteration: int) -> Path:
        return self.root / "checkpoints" / f"iter_{iteration:03d}"
