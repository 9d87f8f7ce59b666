"""Where plateau keeps what it builds once (`$PLATEAU_CACHE`, default `~/.cache/plateau`:
SmolLM2's converted folder under `models/`, tiny bases under `bases/`, XoT guides under
`guides/`), and the one way such a folder is published: built in a temporary sibling and
renamed into place, so a killed build never leaves a folder that a later run would trust.
Lives in policies/, the lowest layer that builds a cached folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("PLATEAU_CACHE", Path.home() / ".cache" / "plateau")).expanduser()


def publish_folder(folder: Path, build: Callable[[Path], None], finished: Callable[[Path], bool] = Path.exists,
                   prefix: str = ".building-") -> None:
    """`build(tmp)` into a fresh sibling of `folder`, then rename it to `folder`. When a
    concurrent build has `finished` first, its folder is kept and ours discarded; an
    unfinished leftover at `folder` is replaced. The folder is world-readable (the cache
    may be shared)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=prefix))
    tmp.chmod(0o755)  # mkdtemp makes it private
    try:
        build(tmp)
        if finished(folder):
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
