"""The policy-gradient update over token batches that PPO and GRPO share.

Search traces become `training.rollouts.Rollout`s. Before the update, one no-grad pass of
the trained model over them gives pi_old (`old_logp: recompute`, the default, as verl's
`recompute_log_prob`: the sampler may run in another dtype (bf16 vLLM, `sample_dtype`) or
engine, so its recorded log-probs are not the trained model's) and the policy's entropy
on its own samples; `old_logp: sampler` uses the recorded log-probs instead. An update of
one optimizer step without a critic reads both off its own forward instead
(`one_step_update`). `target_kl` stops an update early. The first
minibatch of each update logs `ratio_dev` = mean |pi / pi_old - 1| over trained tokens
(~0 under recompute); under recompute `sampler_ratio_dev` is the same figure for the
sampler's log-probs, so the sampler/trainer mismatch stays visible.

A subclass fills in each rollout's per-token advantages (and value targets);
`PolicyGradientTrainer.update` then runs clipped-ratio epochs over shuffled minibatches,
with an optional KL penalty against a frozen reference and an optional critic, in micro
batches of `micro_batch_size` traces whose gradients accumulate (so n in the hundreds per
problem fits in memory). The exploration options of 2025 RL sit here too:
`policy_loss: kl_cov | clip_cov` (with `cov_fraction`), `top_entropy_quantile`,
`negative_weight` (failures' advantages against successes'), and
`reset_reference_every` (ProRL's reference and optimizer resets). The algorithms
themselves live in `training.core_algos`.

This module holds the trainer's options, set-up, checkpoint state, the reference reset and
the no-grad scoring before the update; the update's epochs, micro batches and data-parallel
slices are `training.pg_update` (the part that runs on Ray Train workers), and rollouts as
model inputs are `training.token_batch`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from functools import partial
from typing import Any

import torch

from policies import Policy
from search import SearchResult
from tasks import Task
from training import core_algos
from training.pg_update import MinibatchUpdate
from training.rewards import RewardModel, check_reward
from training.rollouts import Rollout, build_rollouts, context_tokens
from training.schema import OLD_LOGP
from training.step_runner import InProcess, StepRunner
from training.token_batch import LastHidden, TokenBatch, ValueHead, forward, make_batch, unpad


class PolicyGradientTrainer(MinibatchUpdate):
    """Clipped-ratio policy-gradient trainer; subclasses define `assign_advantages`.

    The optimizer steps `policy.model` (and the critic, when there is one) in place; the
    frozen reference is a copy of the weights `setup` saw, kept only when `kl_coef > 0`.
    """

    name = "pg"

    def __init__(self, *, lr: float = 1e-4, weight_decay: float = 0.0, epochs: int = 1, minibatch_size: int = 32,
                 grad_clip: float | None = 1.0, clip_low: float = 0.2, clip_high: float | None = None,
                 loss_agg: str = "token-mean", policy_loss: str = "ppo", kl_coef: float = 0.0,
                 kl_estimator: str = "k3", entropy_coef: float = 0.0, old_logp: str = "recompute",
                 reward: str = "sparse", orm: RewardModel | None = None, cov_fraction: float | None = None,
                 top_entropy_quantile: float = 1.0, negative_weight: float = 1.0,
                 reset_reference_every: int | None = None, micro_batch_size: int | None = None,
                 target_kl: float | None = None, name: str | None = None, seed: int = 0, progress: bool = False,
                 runner: StepRunner | None = None):
        if epochs < 1 or minibatch_size < 1:
            raise ValueError(f"trainer.epochs and trainer.minibatch_size must be >= 1, got {epochs}, {minibatch_size}")
        for key, value in (("micro_batch_size", micro_batch_size), ("reset_reference_every", reset_reference_every)):
            if value is not None and value < 1:
                raise ValueError(f"trainer.{key} must be >= 1 or null, got {value}")
        if target_kl is not None and not target_kl > 0:
            raise ValueError(f"trainer.target_kl must be > 0 or null, got {target_kl}")
        self.target_kl = target_kl
        if old_logp not in OLD_LOGP:
            raise ValueError(f"trainer.old_logp: {old_logp!r} is not one of {list(OLD_LOGP)}")
        self.old_logp, self.reward, self.orm = old_logp, check_reward(reward), orm
        core_algos.lookup(core_algos.KL_ESTIMATORS, kl_estimator, "trainer.kl_estimator")
        core_algos.aggregate(torch.zeros(1, 1), torch.ones(1, 1), loss_agg)
        self.policy_loss = core_algos.lookup(core_algos.POLICY_LOSSES, policy_loss, "trainer.policy_loss")
        self.loss_options = {} if cov_fraction is None else {"cov_fraction": cov_fraction}
        if self.loss_options and "cov_fraction" not in inspect.signature(self.policy_loss).parameters:
            raise ValueError(f"trainer.cov_fraction is for policy_loss kl_cov | clip_cov, not {policy_loss!r}")
        core_algos.top_entropy_mask(torch.ones(1, 1), torch.ones(1, 1), top_entropy_quantile)  # checks the range
        core_algos.weight_negative_advantages(torch.zeros(1), negative_weight)  # checks the range
        self.top_entropy_quantile, self.reset_reference_every = top_entropy_quantile, reset_reference_every
        self.negative_weight = negative_weight
        self.runner = runner or InProcess()  # where the update runs: here, or data-parallel (cluster.train_workers)
        selecting = [key for key, on in ((f"trainer.policy_loss={policy_loss}",
                                          "cov_fraction" in inspect.signature(self.policy_loss).parameters),
                                         (f"trainer.top_entropy_quantile={top_entropy_quantile}",
                                          top_entropy_quantile < 1)) if on]
        if self.runner.workers > 1 and selecting:
            raise ValueError(f"cluster.train_workers={self.runner.workers}: {' and '.join(selecting)} pick tokens over "
                             "a whole micro batch, which no data-parallel worker sees; use cluster.train_workers=1")
        self.micro_batch_size = micro_batch_size or minibatch_size
        self.lr, self.weight_decay, self.epochs, self.minibatch_size = lr, weight_decay, epochs, minibatch_size
        self.grad_clip, self.clip_low, self.clip_high, self.loss_agg = grad_clip, clip_low, clip_high, loss_agg
        self.kl_coef, self.kl_estimator, self.entropy_coef = kl_coef, kl_estimator, entropy_coef
        self.seed, self.progress = seed, progress
        self.name = name or self.name  # a row label (training.report reads trainer.name): e.g. grpo+kl_cov
        self.critic_model: torch.nn.Module | None = None  # a separate critic backbone, when configured
        self.value_head: ValueHead | None = None
        self.uses_critic = False  # a critic exists (built in `setup`)
        self.critic_active = False  # this iteration's update trains it (GAE needs it, tree advantages don't)
        self.kl_in_loss = kl_coef > 0
        self.score_in_update = False  # this iteration's update reads pi_old off its own forward (`one_step_update`)

    # ------------------------------------------------------------ set-up and state

    def setup(self, policy: Policy, task: Task) -> Task:
        self.policy, self.task = policy, task
        model = policy.model
        self.ref_model = copy.deepcopy(model).eval().requires_grad_(False) if self.kl_coef > 0 else None
        groups = [{"params": list(model.parameters()), "lr": self.lr}]
        if self.uses_critic:
            groups.append({"params": self.build_critic(model), "lr": self.critic_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        return task

    def build_critic(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def critic_modules(self) -> dict[str, torch.nn.Module]:
        return {k: m for k, m in (("value_head", self.value_head), ("critic_model", self.critic_model)) if m is not None}

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and critic weights: with the policy checkpoint, all a resumed run needs
        (minibatch order is seeded by iteration, so there is no RNG). The KL reference is the
        iteration-0 policy, which `setup` copies again on resume (`training.run` rebuilds
        `cfg.policy`, the cached base, before loading a checkpoint), so it is not stored;
        except under ProRL's resets (`reset_reference_every`), which make it a later policy
        that nothing rebuilds."""
        state = {"optimizer": self.optimizer.state_dict(),
                 "critic": {k: m.state_dict() for k, m in self.critic_modules().items()}}
        if self.ref_model is not None and self.reset_reference_every:
            state["reference"] = self.ref_model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for k, m in self.critic_modules().items():
            m.load_state_dict(state["critic"][k])
        if self.ref_model is not None and state.get("reference") is not None:  # older checkpoints hold it always
            self.ref_model.load_state_dict(state["reference"])

    # ------------------------------------------------------------ one iteration

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        rollouts, dropped = build_rollouts(self.policy, results)
        stats: dict[str, float] = {"traces_dropped": sum(dropped.values()),
                                   **{f"traces_dropped_{k}": v for k, v in dropped.items()}}
        if not rollouts:
            return {**stats, "pg_rollouts": 0}
        stats["off_context_tokens"] = context_tokens(rollouts)
        stats["reference_reset"] = float(self.maybe_reset_reference(iteration))
        self.score_in_update = self.one_step_update(rollouts)
        if not self.score_in_update:
            stats.update(self.score_rollouts(rollouts))
        elif self.ref_model is not None:
            self.score_reference(rollouts)
        stats.update(self.assign_advantages(rollouts))
        stats.update(self.update(rollouts, iteration))
        return stats

    def one_step_update(self, rollouts: list[Rollout]) -> bool:
        """Whether the update is one optimizer step on every rollout (one epoch, one
        minibatch) with nothing before it reading pi_old (no critic: GAE's KL-in-reward and
        old values need the scoring pass). Then pi_old is the trained model as it stands, and
        the scoring pass would repeat the update's own forward: the update reads pi_old,
        entropy and the sampler's deviation off that forward instead (TRL's GRPO does the same
        when it updates once per generation batch). Same numbers, one no-grad pass fewer."""
        return self.epochs == 1 and len(rollouts) <= self.minibatch_size and not self.critic_active

    def maybe_reset_reference(self, iteration: int) -> bool:
        """ProRL's reference reset (Liu et al. 2025): after every `reset_reference_every`
        updates the KL reference becomes the current policy and AdamW's moments are dropped,
        so a long run is not held to its start. Both live in `state_dict`, and the schedule
        depends on the iteration only, so a resumed run resets where an unbroken one does."""
        every = self.reset_reference_every
        if not every or iteration <= 1 or (iteration - 1) % every:
            return False
        if self.ref_model is not None:
            self.ref_model.load_state_dict(self.policy.model.state_dict())
        self.optimizer.state.clear()
        return True

    def assign_advantages(self, rollouts: list[Rollout]) -> dict[str, float]:
        """Fill `advantages` (and, with a critic, `returns`) of every rollout."""
        raise NotImplementedError

    @property
    def pad_id(self) -> int:
        tok = self.policy.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @torch.no_grad()
    def score_rollouts(self, rollouts: list[Rollout]) -> dict[str, float]:
        """Before the update: pi_old (recomputed by the trained model, or the sampler's), the
        policy's mean entropy on its own trained tokens, reference log-probs (when a KL
        penalty is on) and the critic's values (the 'old values' of value clipping and GAE).
        A critic that shares the policy's backbone reads its values off the same pass (one
        policy forward per micro batch, not two)."""
        entropy, sampler_dev, tokens = 0.0, 0.0, 0.0
        shared_head = self.value_head if self.critic_active and self.critic_model is None else None
        for chunk in self.minibatches(rollouts, size=self.micro_batch_size):
            batch = make_batch(chunk, self.pad_id, ("sampler_logp",))
            scores = forward(self.policy.model, batch, shared_head, entropy=True)  # a shared critic's values too
            logp = scores["logp"] if self.old_logp == "recompute" else batch.tensors["sampler_logp"]
            for r, lp in zip(chunk, unpad(logp, chunk)):
                r.old_logp = lp
            entropy += float((scores["entropy"] * batch.mask).sum())
            sampler_ratio = (batch.tensors["sampler_logp"] - scores["logp"]).exp()
            sampler_dev += float(((sampler_ratio - 1).abs() * batch.mask).sum())
            tokens += float(batch.mask.sum())
            if self.ref_model is not None:
                self.set_reference_logp(chunk, batch)
            if self.critic_active:
                for r, v in zip(chunk, unpad(self.values(batch, scores, self.train_modules()), chunk)):
                    r.old_values = v
        tokens = max(tokens, 1.0)
        stats = {"entropy": entropy / tokens}
        if self.old_logp == "recompute":
            stats["sampler_ratio_dev"] = sampler_dev / tokens
        return stats

    @torch.no_grad()
    def score_reference(self, rollouts: list[Rollout]) -> None:
        """The frozen reference's log-probs (the KL penalty's), micro batch by micro batch:
        the part of `score_rollouts` a one-step update still needs."""
        for chunk in self.minibatches(rollouts, size=self.micro_batch_size):
            self.set_reference_logp(chunk, make_batch(chunk, self.pad_id, ()))

    def set_reference_logp(self, chunk: list[Rollout], batch: TokenBatch) -> None:
        for r, lp in zip(chunk, unpad(forward(self.ref_model, batch)["logp"], chunk)):
            r.ref_logp = lp

    def train_modules(self) -> dict[str, torch.nn.Module]:
        """What the optimizer steps, under the names the update reads: the policy and, with a
        critic, its value head and separate backbone (`LastHidden`)."""
        modules = {"policy": self.policy.model}
        if self.value_head is not None:
            modules["value_head"] = self.value_head
        if self.critic_model is not None:
            modules["critic"] = LastHidden(self.critic_model)
        return modules

    def update(self, rollouts: list[Rollout], iteration: int) -> dict[str, float]:
        """Clipped-ratio epochs over shuffled minibatches (`train_minibatches`), run by
        `self.runner`: in this process, or data-parallel on `cluster.train_workers` workers,
        which are sent this trainer's settings (`replica`), the rollouts without their search
        trees, and the modules with the optimizer's state."""
        lean = [dataclasses.replace(r, result=None, trace=None) for r in rollouts]  # the update reads neither
        step = partial(self.replica().train_minibatches, lean, iteration, self.pad_id)
        out = self.runner.run(step, self.train_modules(), self.optimizer)
        out.update(pg_rollouts=len(rollouts), pg_tokens=int(sum(sum(r.loss_mask) for r in rollouts)))
        return out

    def replica(self) -> PolicyGradientTrainer:
        """This trainer's settings without its policy, task, ORM, reference, critic or
        optimizer: all `train_minibatches` reads besides the modules and optimizer it is handed."""
        lean = copy.copy(self)
        lean.policy = lean.task = lean.orm = lean.ref_model = lean.optimizer = None
        lean.value_head = lean.critic_model = None
        return lean
