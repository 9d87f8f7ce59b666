"""A progress bar for a search: problems finished out of the batch, and tokens/s.

A search of a few hundred problems runs for minutes on a CPU, in rounds that all problems
share, so the bar moves when problems finish (by budget, exhausted tree or size limit)
and shows the generation rate of the whole batch. `enabled=False` (the `progress` config
key, switched off in parallel jobs) draws nothing.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm


class SearchBar:
    def __init__(self, total: int, name: str, enabled: bool):
        self.bar = tqdm(total=total, desc=f"search {name}", unit="problem", disable=not enabled, leave=False,
                        dynamic_ncols=True)
        self.started = time.perf_counter()

    def show(self, finished: int, tokens: int) -> None:
        """Redraw with `finished` problems done and `tokens` generated so far."""
        self.bar.n = finished
        elapsed = max(1e-9, time.perf_counter() - self.started)
        self.bar.set_postfix_str(f"{tokens:,} tokens, {tokens / elapsed:,.0f} tok/s", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
