"""Expert Iteration (Havrilla et al. 2024; ExIt, Anthony et al. 2017).

Each round the search strategy is the expert: its correct traces R_i are deduplicated and
merged into the data set D_i = R_i ∪ D_{i-1} (or D_i = R_i with `accumulate: false`), and
the policy is fine-tuned on D_i — from the base weights each round by default, as in the
paper, or continuing from the current weights with `reset_each_round: false`.

Which traces are correct follows `reward` (`training.rewards.trace_scores`, dense steps
combined by their minimum): sparse keeps traces whose verifier reward reaches
`good_threshold`; dense keeps those whose every text step's task reward does (on Countdown:
a correct answer reached through legal steps only); orm keeps those the run's outcome
reward model scores at or above it. `good_threshold: null` is 1.0, or 0.5 (the ORM's
decision boundary) with `reward: orm`.

Each round also logs the policy's mean entropy on (up to `ENTROPY_SAMPLE` of) the round's
traces before training, and the traces lost to training: `traces_dropped_length` counts
examples longer than `sft.max_length`, which SFT trains with their prompt cut.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import torch

from policies import TrainablePolicy
from search import SearchResult
from tasks import Task
from training.rewards import RewardModel, check_reward, trace_scores
from training.sft import SFTConfig, completion_entropy, encode_pair, sft_step
from training.step_runner import InProcess, StepRunner

ENTROPY_SAMPLE = 64  # traces per round in the no-grad entropy pass (evenly spaced over the round)


def dedup_key(problem_id: str, text: str) -> tuple[str, str]:
    """Two traces of one problem are the same example when they differ only in whitespace."""
    return problem_id, " ".join(text.split())


def expert_examples(results: list[SearchResult], iteration: int, strategy: str = "", threshold: float = 1.0,
                    scores: list[list[float]] | None = None) -> list[dict[str, Any]]:
    """The correct traces of one round (score >= `threshold`; the score is each trace's
    reward unless `scores` gives one per trace of each result), deduplicated by (problem,
    whitespace-normalised text), each with its provenance."""
    seen: set[tuple[str, str]] = set()
    out = []
    for i, r in enumerate(results):
        for j, t in enumerate(r.traces()):
            key = dedup_key(t.problem_id, t.text)
            score = t.reward if scores is None else scores[i][j]
            if score >= threshold and key not in seen:
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
                 reward: str = "sparse", good_threshold: float | None = None, orm: RewardModel | None = None,
                 seed: int = 0, progress: bool = False, runner: StepRunner | None = None):
        self.sft_config = SFTConfig(**(sft or {}))
        self.runner = runner or InProcess()  # where SFT runs: here, or data-parallel (cluster.train_workers)
        self.reward, self.orm = check_reward(reward), orm
        self.good_threshold = good_threshold if good_threshold is not None else (0.5 if reward == "orm" else 1.0)
        self.reset_each_round = reset_each_round
        self.accumulate = accumulate
        self.seed = seed
        self.progress = progress
        self.dataset: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None

    def setup(self, policy: TrainablePolicy, task: Task) -> Task:
        self.policy, self.task = policy, task
        self.base_state = copy.deepcopy(policy.model.state_dict()) if self.reset_each_round else None
        return task

    def scores(self, results: list[SearchResult]) -> list[list[float]]:
        """Each trace's score under `reward`, per result (one batched ORM call with `orm`)."""
        items = [(r.problem, t) for r in results for t in r.traces()]
        flat = iter(trace_scores(self.task, items, self.reward, self.orm, dense="min"))
        return [[next(flat) for _ in r.traces()] for r in results]

    def examples(self, iteration: int, results: list[SearchResult], strategy: str) -> list[dict[str, Any]]:
        """This round's training examples: the correct, deduplicated traces (RCRL overrides)."""
        return expert_examples(results, iteration, strategy, self.good_threshold, self.scores(results))

    def new_optimizer(self) -> torch.optim.Optimizer:
        """A fresh AdamW over the policy: each round's with `reset_each_round`, else the run's."""
        return torch.optim.AdamW(self.policy.model.parameters(), lr=self.sft_config.lr,
                                 weight_decay=self.sft_config.weight_decay)

    def round_entropy(self, results: list[SearchResult]) -> float:
        """Mean per-token entropy of the policy (before this round's training) on up to
        `ENTROPY_SAMPLE` of the round's traces, evenly spaced."""
        traces = [t for r in results for t in r.traces()]
        sample = traces[:: max(1, -(-len(traces) // ENTROPY_SAMPLE))]
        tok = self.policy.tokenizer
        pairs = [encode_pair(tok, t.prompt, t.text, eos=t.finish_reason == "eos") for t in sample]
        return completion_entropy(self.policy.model, tok, pairs, self.sft_config.batch_size)

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        strategy = results[0].tree.graph.graph.get("strategy", "") if results else ""
        entropy = self.round_entropy(results)
        new = self.examples(iteration, results, strategy)
        self.dataset = merge(self.dataset, new) if self.accumulate else new
        model = self.policy.model
        if self.reset_each_round:
            model.load_state_dict(self.base_state)
            optimizer = self.new_optimizer()
        else:
            self.optimizer = optimizer = self.optimizer or self.new_optimizer()
        examples = [(d["prompt"], d["completion"]) for d in self.dataset]
        step = partial(sft_step, tokenizer=self.policy.tokenizer, examples=examples, config=self.sft_config,
                       seed=self.seed + iteration, progress=self.progress)
        stats = self.runner.run(step, {"model": model}, optimizer)
        tok, limit = self.policy.tokenizer, self.sft_config.max_length
        too_long = sum(sum(map(len, encode_pair(tok, d["prompt"], d["completion"]))) > limit for d in new)
        return {"new_examples": len(new), "dataset_size": len(self.dataset), "entropy": entropy,
                "traces_dropped": too_long, "traces_dropped_length": too_long, **stats}

    def state_dict(self) -> dict[str, Any]:
        """The data set and the continuing optimizer. The base each round resets to is not
        stored: it is the iteration-0 policy, which `setup` copies again on resume
        (`training.run` rebuilds `cfg.policy`, the cached base, before loading a checkpoint)."""
        return {"dataset": self.dataset, "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset = state["dataset"]  # an older checkpoint's base_state is the base setup copied
        if state["optimizer"] is not None:
            self.optimizer = torch.optim.AdamW(self.policy.model.parameters(), lr=self.sft_config.lr,
                                               weight_decay=self.sft_config.weight_decay)
            self.optimizer.load_state_dict(state["optimizer"])
