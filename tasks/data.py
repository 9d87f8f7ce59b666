"""Where task data files live, independent of the directory a command runs in.

A task's `path` (`task.path` in the config) is used as given when absolute, and read
under the data root when relative: `gsm8k` means `<data root>/gsm8k`. The data root is
`$PLATEAU_DATA` when set, else the folder `shared/data` beside the project checkout
(found from this file, not the working directory). A path that does not exist fails when
the task is built -- before any model loads -- with one line naming `task.path`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = "PLATEAU_DATA"


def data_root() -> Path:
    """`$PLATEAU_DATA`, else `shared/data` beside the checkout that holds this package."""
    given = os.environ.get(ENV)
    return Path(given).expanduser() if given else Path(__file__).resolve().parents[2] / "shared" / "data"


def data_path(path: str | os.PathLike[str], task: str) -> Path:
    """The existing file or folder `path` names (see the module docstring)."""
    resolved = data_root() / Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(
            f"task.path: {task} data {str(path)!r} not found at {resolved} (a relative path is read under "
            f"the data root {data_root()}; set {ENV} or give an absolute path)"
        )
    return resolved


def jsonl_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a JSON-lines file; a line that
    is not JSON raises ValueError naming file and line (`<file>:<n>: not JSON (...)`).
    Every JSONL reader of the project (GSM8K's splits, a run's metrics.jsonl) goes through it."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
