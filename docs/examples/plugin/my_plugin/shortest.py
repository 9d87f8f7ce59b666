"""Shortest-correct distillation: each round, fine-tune on the shortest correct trace of
every problem found so far. A whole plateau trainer in one file."""

from __future__ import annotations

from typing import Any

from policies import TrainablePolicy
from search import SearchResult
from tasks import Task
from training.sft import SFTConfig, sft


class ShortestCorrect:
    name = "shortest"

    def __init__(self, epochs: int = 2, lr: float = 1e-3, batch_size: int = 16, seed: int = 0):
        self.config = SFTConfig(epochs=epochs, lr=lr, batch_size=batch_size)
        self.seed = seed
        self.best: dict[str, tuple[str, str]] = {}  # problem id -> (prompt, trace)

    def setup(self, policy: TrainablePolicy, task: Task) -> Task:
        self.policy = policy
        return task

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        for r in results:
            for t in r.traces():
                old = self.best.get(t.problem_id)
                if t.reward >= 1.0 and (old is None or len(t.text) < len(old[1])):
                    self.best[t.problem_id] = (t.prompt, t.text)
        if not self.best:
            return {"examples": 0}
        stats = sft(self.policy.model, self.policy.tokenizer, list(self.best.values()), self.config,
                    seed=self.seed + iteration)
        return {"examples": len(self.best), **stats}

    def state_dict(self) -> dict[str, Any]:
        return {"best": {k: list(v) for k, v in self.best.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = {k: tuple(v) for k, v in state["best"].items()}
