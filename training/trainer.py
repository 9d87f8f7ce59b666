"""The trainer contract: turn one iteration's search results into an updated policy."""

from __future__ import annotations

from typing import Any, Protocol

from policies import TrainablePolicy
from search import SearchResult
from tasks import Task


class Trainer(Protocol):
    """`setup` once with the policy it updates in place; it returns the task the loop
    searches and evaluates with (the task itself, or a wrapper such as RCRL's
    return-conditioned prompts). `step` once per iteration.

    `state_dict`/`load_state_dict` hold everything beyond the policy weights that a
    resumed run needs (optimiser, data set so far, ...), as tensors and plain Python data
    (dicts, lists, tuples, str, numbers, None): checkpoints are read with
    `torch.load(weights_only=True)`, which refuses anything else (NumPy arrays included).
    """

    name: str

    def setup(self, policy: TrainablePolicy, task: Task) -> Task: ...

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
