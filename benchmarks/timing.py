"""Wall seconds spent inside a callable, for the benchmark scripts that time what they wrap
(`loop_profile`'s phases and model calls, `search_scaling`'s model and prefill time)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[..., Any], record: Callable[[float], None]) -> Callable[..., Any]:
    """`fn`, wrapped so that each call's wall seconds go to `record` (also when it raises)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record(time.perf_counter() - started)

    return wrapper
