"""Outcome reward model (ORM): P(a trace is correct | prompt + trace so far).

As in Havrilla et al. (2024), the ORM is a classifier on the policy's own samples, each
labelled by the task's verifier (1 when the trace's reward reaches `threshold`, else 0).
Its backbone is a copy of the policy's transformer (`backbone: policy`, the paper's
choice: the ORM starts from what the policy knows) or a separate tiny Llama
(`backbone: tiny`); a zero-initialised linear head on the last token's hidden state gives
the logit, so an untrained ORM scores everything 0.5.

It is used three ways, all through `value(texts) -> list[float]`:
  * rerank@k: `search.metrics.summarize(..., scorer=orm.score_traces)` picks the trace the
    ORM likes best among k samples (`eval.rerank=orm`);
  * a search node evaluator: `search.evaluators.ValueModelEvaluator(orm)` scores
    prompt + partial trace (`search/evaluator=value_model`);
  * a reward: `training.rewards` (`trainer.reward=orm`, every trainer).

`ORMTraining` is what a run holds: the ORM, its training recipe, the labelled traces so
far, and the checkpoint state; `fit(iteration, results)` trains on one more round.

In `training.run` the loop builds the run's ORM (`build_run_orm`) only when one of the
three uses it, and then `WithORM` trains it on every round's own labelled traces before the
trainer steps (so the trainer's ORM reward has seen this round's labels; the search of
round i is guided by the ORM of rounds < i, untrained, i.e. 0.5 everywhere, in round 1)
and checkpoints it with the trainer. An evaluator config whose `model` is left missing
(`model: ???`, conf/search/evaluator/value_model.yaml) is given the run's ORM
(`strategy_overrides`), so search/ never imports training/.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from policies import TrainablePolicy
from policies.tiny import build_tiny_model
from search import SearchResult
from search.tree import Trace
from tasks import Task
from training.sft import SFTConfig, epoch_batches
from training.trainer import Trainer

BACKBONES = ("policy", "tiny")


@dataclass
class ORMConfig(SFTConfig):
    """The SFT recipe (the ORM is fitted like any model on text) plus the label rule."""

    threshold: float = 1.0  # reward at or above which a trace is labelled correct


class OutcomeRewardModel(torch.nn.Module):
    """A transformer backbone (anything returning `last_hidden_state`) with a scalar head."""

    def __init__(self, backbone: torch.nn.Module, tokenizer: Any, max_length: int = 512):
        super().__init__()
        self.backbone, self.tokenizer, self.max_length = backbone, tokenizer, max_length
        self.head = torch.nn.Linear(backbone.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.eval()

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """One logit per text, shape (len(texts),); texts longer than `max_length` tokens
        keep their end (the part that decides correctness)."""
        rows = [self.tokenizer(t, add_special_tokens=True)["input_ids"][-self.max_length:] for t in texts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(rows)), mask.sum(1) - 1]
        return self.head(last.float()).squeeze(-1)

    @torch.no_grad()
    def value(self, texts: Sequence[str], batch_size: int = 64) -> list[float]:
        """P(correct) for each text (prompt + trace or trace prefix)."""
        was_training = self.training
        self.eval()
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            out += torch.sigmoid(self.logits(texts[start : start + batch_size])).tolist()
        self.train(was_training)
        return out

    def score_traces(self, traces: Sequence[Trace]) -> list[float]:
        """The `scorer` of `search.metrics.summarize`: value of each whole trace."""
        return self.value([t.prompt + t.text for t in traces]) if traces else []


def build_orm(policy: TrainablePolicy | None = None, backbone: str = "policy", size: str = "1m", seed: int = 0,
              max_length: int = 512) -> OutcomeRewardModel:
    """An untrained ORM on a copy of `policy`'s transformer, or on a fresh tiny Llama."""
    if backbone not in BACKBONES:
        raise ValueError(f"orm.backbone: {backbone!r} is not one of {BACKBONES}")
    if backbone == "policy":
        if policy is None:
            raise ValueError("orm.backbone=policy needs the run's (trainable, in-process) policy")
        return OutcomeRewardModel(copy.deepcopy(policy.model.base_model), policy.tokenizer, max_length)
    model, tokenizer = build_tiny_model(size, seed=seed)
    return OutcomeRewardModel(model.base_model, tokenizer, max_length)


def labelled_traces(traces: Sequence[Trace], threshold: float = 1.0) -> list[tuple[str, float]]:
    """(prompt + trace, 0/1 label) pairs, deduplicated by whitespace-normalised text."""
    seen: set[str] = set()
    out = []
    for t in traces:
        text = t.prompt + t.text
        key = " ".join(text.split())
        if key not in seen:
            seen.add(key)
            out.append((text, float(t.reward >= threshold)))
    return out


def train_orm(orm: OutcomeRewardModel, traces: Sequence[Trace] | Sequence[tuple[str, float]],
              config: ORMConfig | dict | None = None, seed: int = 0, progress: bool = False,
              optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
    """Fit `orm` to labelled traces (`Trace`s, labelled by the verifier's reward, or
    ready (text, label) pairs) with binary cross-entropy; returns the last epoch's mean
    loss and accuracy and the fraction of positive labels."""
    config = config if isinstance(config, ORMConfig) else ORMConfig(**(config or {}))
    examples = labelled_traces(traces, config.threshold) if traces and isinstance(traces[0], Trace) else list(traces)
    if not examples:
        return {"orm_loss": float("nan"), "orm_accuracy": float("nan"), "orm_positive": float("nan")}
    orm.max_length = config.max_length
    optimizer = optimizer or torch.optim.AdamW(orm.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    orm.train()
    losses, correct = [], 0
    lengths = [len(text) for text, _ in examples]  # characters: the length order, before tokenising
    device = next(orm.parameters()).device.type
    bar = tqdm(total=config.epochs * -(-len(examples) // config.batch_size), desc="orm", disable=not progress, leave=False)
    for _ in range(config.epochs):
        losses, correct = [], 0
        for indices in epoch_batches(lengths, config.batch_size, config.group_by_length, generator):
            batch = [examples[i] for i in indices]
            labels = torch.tensor([y for _, y in batch])
            with config.autocast_context(device):
                logits = orm.logits([x for x, _ in batch]).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(orm.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item() * len(batch))
            correct += int(((logits.detach() > 0).float() == labels).sum())
            bar.update()
    bar.close()
    orm.eval()
    return {"orm_loss": sum(losses) / len(examples), "orm_accuracy": correct / len(examples),
            "orm_positive": sum(y for _, y in examples) / len(examples)}


class ORMTraining:
    """The ORM of a run: trained after every search round on that round's labelled
    traces (all rounds so far with `accumulate`), continuing from its current weights.

    Build it with the run's policy: `instantiate(cfg.orm, policy=policy)`."""

    def __init__(self, policy: TrainablePolicy | None = None, backbone: str = "policy", size: str = "1m",
                 train: dict | None = None, accumulate: bool = True, seed: int = 0, progress: bool = False):
        self.config = ORMConfig(**(train or {}))
        self.model = build_orm(policy, backbone, size, seed, self.config.max_length)
        self.accumulate, self.seed, self.progress = accumulate, seed, progress
        self.dataset: list[tuple[str, float]] = []
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)

    def fit(self, iteration: int, results: Sequence[SearchResult]) -> dict[str, float]:
        new = labelled_traces([t for r in results for t in r.traces()], self.config.threshold)
        if self.accumulate:
            known = {" ".join(x.split()) for x, _ in self.dataset}
            self.dataset += [(x, y) for x, y in new if " ".join(x.split()) not in known]
        else:
            self.dataset = new
        return train_orm(self.model, self.dataset, self.config, seed=self.seed + iteration,
                         progress=self.progress, optimizer=self.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "dataset": self.dataset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.dataset = state["dataset"]


RERANKERS = (None, "orm")


def orm_users(cfg: DictConfig) -> list[str]:
    """Which parts of run `cfg` need the ORM: `trainer` (trainer.reward=orm), `evaluator` (a
    search evaluator with `model: ???`), `rerank` (eval.rerank=orm)."""
    rerank = cfg.eval.get("rerank")
    if rerank not in RERANKERS:
        raise ValueError(f"eval.rerank: {rerank!r} is not one of {list(RERANKERS)} (null = no rerank@k)")
    evaluator = cfg.search.get("evaluator")
    wants_model = (isinstance(evaluator, DictConfig) and "model" in evaluator.keys()
                   and OmegaConf.is_missing(evaluator, "model"))
    return [name for name, used in (("trainer", cfg.trainer.get("reward") == "orm"), ("evaluator", wants_model),
                                    ("rerank", rerank == "orm")) if used]


def build_run_orm(cfg: DictConfig, policy: TrainablePolicy) -> ORMTraining | None:
    """The run's ORM from `cfg.orm`, or None when nothing in the run uses it."""
    return instantiate(cfg.orm, policy=policy) if orm_users(cfg) else None


def strategy_overrides(cfg: DictConfig, orm: ORMTraining | None) -> dict[str, Any]:
    """`instantiate(cfg.search, **these)`: the run's ORM as the model of an evaluator that
    left its model to the run."""
    return {"evaluator": {"model": orm.model}} if orm is not None and "evaluator" in orm_users(cfg) else {}


class WithORM:
    """A trainer together with the run's ORM: each step first fits the ORM on the round's
    labelled traces, then steps the trainer; both are checkpointed together."""

    def __init__(self, trainer: Trainer, orm: ORMTraining):
        self.trainer, self.orm = trainer, orm
        self.name = trainer.name

    def setup(self, policy: TrainablePolicy, task: Task) -> Task:
        return self.trainer.setup(policy, task)

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        return {**self.orm.fit(iteration, results), **self.trainer.step(iteration, results)}

    def state_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer.state_dict(), "orm": self.orm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.orm.load_state_dict(state["orm"])
