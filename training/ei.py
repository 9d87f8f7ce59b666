"""Expert Iteration (Havrilla et al. 2024; ExIt, Anthony et al. 2017).

Each round the search strategy is the expert: its correct traces R_i are deduplicated and
merged into the data set D_i = R_i ∪ D_{i-1} (or D_i = R_i with `accumulate: false`), and
the policy is fine-tuned on D_i — from the base weights each round by default, as in the
paper, or continuing from the current weights with `reset_each_round: false`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from policies import Policy
from search import SearchResult
from tasks import Task
from training.sft import SFTConfig, sft


def dedup_key(problem_id: str, text: str) -> tuple[str, str]:
    """Two traces of one problem are the same example when they differ only in whitespace."""
    return problem_id, " ".join(text.split())


def expert_examples(results: list[SearchResult], iteration: int, strategy: str = "") -> list[dict[str, Any]]:
    """The correct traces of one round, deduplicated by (problem, whitespace-normalised
    text), each with its provenance."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in results:
        for t in r.traces():
            key = dedup_key(t.problem_id, t.text)
            if t.reward >= 1.0 and key not in seen:
                seen.add(key)
                out.append({"problem_id": t.problem_id, "prompt": t.prompt, "completion": t.text,
                            "reward": t.reward, "iteration": iteration, "strategy": strategy})
    return out


def merge(dataset: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """D ∪ R, keeping the first (earliest) copy of each (problem, text)."""
    keys = {dedup_key(d["problem_id"], d["completion"]) for d in dataset}
    return dataset + [d for d in new if dedup_key(d["problem_id"], d["completion"]) not in keys]


class ExpertIteration:
    name = "ei"

    def __init__(self, sft: dict | None = None, reset_each_round: bool = True, accumulate: bool = True,
                 seed: int = 0, progress: bool = False):
        self.sft_config = SFTConfig(**(sft or {}))
        self.reset_each_round = reset_each_round
        self.accumulate = accumulate
        self.seed = seed
        self.progress = progress
        self.dataset: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None

    def setup(self, policy: Policy, task: Task) -> Task:
        self.policy = policy
        self.base_state = copy.deepcopy(policy.model.state_dict()) if self.reset_each_round else None
        return task

    def examples(self, iteration: int, results: list[SearchResult], strategy: str) -> list[dict[str, Any]]:
        """This round's training examples: the correct, deduplicated traces (RCRL overrides)."""
        return expert_examples(results, iteration, strategy)

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        strategy = results[0].tree.graph.graph.get("strategy", "") if results else ""
        new = self.examples(iteration, results, strategy)
        self.dataset = merge(self.dataset, new) if self.accumulate else new
        model = self.policy.model
        if self.reset_each_round:
            model.load_state_dict(self.base_state)
            optimizer = None
        else:
            self.optimizer = self.optimizer or torch.optim.AdamW(
                model.parameters(), lr=self.sft_config.lr, weight_decay=self.sft_config.weight_decay)
            optimizer = self.optimizer
        stats = sft(model, self.policy.tokenizer, [(d["prompt"], d["completion"]) for d in self.dataset],
                    self.sft_config, seed=self.seed + iteration, progress=self.progress, optimizer=optimizer)
        return {"new_examples": len(new), "dataset_size": len(self.dataset), **stats}

    def state_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "base_state": self.base_state,
                "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset = state["dataset"]
        self.base_state = state["base_state"]
        if state["optimizer"] is not None:
            self.optimizer = torch.optim.AdamW(self.policy.model.parameters(), lr=self.sft_config.lr,
                                               weight_decay=self.sft_config.weight_decay)
            self.optimizer.load_state_dict(state["optimizer"])
