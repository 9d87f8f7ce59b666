"""The policy-gradient update over token batches that PPO and GRPO share.

Search traces become `training.rollouts.Rollout`s. Before the update, one no-grad pass of
the trained model over them gives pi_old (`old_logp: recompute`, the default, as verl's
`recompute_log_prob`: the sampler may run in another dtype (bf16 vLLM, `sample_dtype`) or
engine, so its recorded log-probs are not the trained model's) and the policy's entropy
on its own samples; `old_logp: sampler` uses the recorded log-probs instead. The first
minibatch of each update logs `ratio_dev` = mean |pi / pi_old - 1| over trained tokens
(~0 under recompute); under recompute `sampler_ratio_dev` is the same figure for the
sampler's log-probs, so the sampler/trainer mismatch stays visible.

A subclass fills in each rollout's per-token advantages (and value targets);
`PolicyGradientTrainer.update` then runs clipped-ratio epochs over shuffled minibatches,
with an optional KL penalty against a frozen reference and an optional critic, in micro
batches of `micro_batch_size` traces whose gradients accumulate (so n in the hundreds per
problem fits in memory). The exploration options of 2025 RL sit here too:
`policy_loss: kl_cov | clip_cov` (with `cov_fraction`), `top_entropy_quantile`, and
`reset_reference_every` (ProRL's reference and optimizer resets). The algorithms
themselves live in `training.core_algos`.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from policies import Policy
from search import SearchResult
from tasks import Task
from training import core_algos
from training.rewards import RewardModel, check_reward
from training.rollouts import Rollout, build_rollouts, mask_off_context
from training.sft import collate, labelled_logprobs

OLD_LOGP = ("recompute", "sampler")


class ValueHead(torch.nn.Module):
    """A linear value head on a causal LM's last hidden state (zero-initialised, so the
    first value estimates are 0 rather than noise)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


@dataclass
class TokenBatch:
    """Collated rollouts. Token tensors are (batch, width - 1) in scoring positions
    (position t scores input token t + 1), zero outside each row's response."""

    inputs: dict[str, torch.Tensor]
    mask: torch.Tensor
    tensors: dict[str, torch.Tensor]


def make_batch(rollouts: list[Rollout], pad_id: int, fields: tuple[str, ...]) -> TokenBatch:
    inputs = collate([(r.prompt_ids, r.response_ids) for r in rollouts], pad_id)
    width = inputs["input_ids"].shape[1] - 1
    tensors = {}
    for name in (*fields, "loss_mask"):
        t = torch.zeros(len(rollouts), width)
        for i, r in enumerate(rollouts):
            values = getattr(r, name)
            if values:
                start = len(r.prompt_ids) - 1
                t[i, start : start + len(values)] = torch.tensor(values, dtype=torch.float32)
        tensors[name] = t
    mask = tensors.pop("loss_mask")
    return TokenBatch(inputs, mask, tensors)


def forward(model: torch.nn.Module, batch: TokenBatch, head: ValueHead | None = None,
            entropy: bool = False) -> dict[str, torch.Tensor]:
    """log p of the response tokens, and optionally entropy and values, all (batch, width - 1)."""
    out = model(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"],
                output_hidden_states=head is not None)
    logp, _ = labelled_logprobs(out.logits, batch.inputs["labels"])
    scores = {"logp": logp}
    if entropy:
        scores["entropy"] = core_algos.entropy_from_logits(out.logits[:, :-1])
    if head is not None:
        scores["values"] = head(out.hidden_states[-1][:, :-1])
    return scores


def unpad(t: torch.Tensor, rollouts: list[Rollout]) -> list[list[float]]:
    """Per-rollout response slices of a (batch, width - 1) tensor, as lists."""
    return [t[i, len(r.prompt_ids) - 1 : len(r.prompt_ids) - 1 + len(r.response_ids)].tolist()
            for i, r in enumerate(rollouts)]


class PolicyGradientTrainer:
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
                 top_entropy_quantile: float = 1.0, reset_reference_every: int | None = None,
                 micro_batch_size: int | None = None, name: str | None = None, seed: int = 0, progress: bool = False):
        if epochs < 1 or minibatch_size < 1:
            raise ValueError(f"trainer.epochs and trainer.minibatch_size must be >= 1, got {epochs}, {minibatch_size}")
        for key, value in (("micro_batch_size", micro_batch_size), ("reset_reference_every", reset_reference_every)):
            if value is not None and value < 1:
                raise ValueError(f"trainer.{key} must be >= 1 or null, got {value}")
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
        self.top_entropy_quantile, self.reset_reference_every = top_entropy_quantile, reset_reference_every
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
        """Optimizer, critic and reference weights: with the policy checkpoint, all a
        resumed run needs (minibatch order is seeded by iteration, so there is no RNG)."""
        return {"optimizer": self.optimizer.state_dict(),
                "critic": {k: m.state_dict() for k, m in self.critic_modules().items()},
                "reference": self.ref_model.state_dict() if self.ref_model is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for k, m in self.critic_modules().items():
            m.load_state_dict(state["critic"][k])
        if self.ref_model is not None and state["reference"] is not None:
            self.ref_model.load_state_dict(state["reference"])

    # ------------------------------------------------------------ one iteration

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        rollouts, dropped = build_rollouts(self.policy, results)
        stats: dict[str, float] = {"traces_dropped": sum(dropped.values()),
                                   **{f"traces_dropped_{k}": v for k, v in dropped.items()}}
        if not rollouts:
            return {**stats, "pg_rollouts": 0}
        stats["off_context_tokens"] = mask_off_context(rollouts)
        stats["reference_reset"] = float(self.maybe_reset_reference(iteration))
        stats.update(self.score_rollouts(rollouts))
        stats.update(self.assign_advantages(rollouts))
        stats.update(self.update(rollouts, iteration))
        return stats

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

    def minibatches(self, rollouts: list[Rollout], generator: torch.Generator | None = None, size: int | None = None):
        order = torch.randperm(len(rollouts), generator=generator).tolist() if generator else range(len(rollouts))
        order, size = list(order), size or self.minibatch_size
        for start in range(0, len(order), size):
            yield [rollouts[i] for i in order[start : start + size]]

    @torch.no_grad()
    def score_rollouts(self, rollouts: list[Rollout]) -> dict[str, float]:
        """Before the update: pi_old (recomputed by the trained model, or the sampler's), the
        policy's mean entropy on its own trained tokens, reference log-probs (when a KL
        penalty is on) and the critic's values (the 'old values' of value clipping and GAE)."""
        entropy, sampler_dev, tokens = 0.0, 0.0, 0.0
        for chunk in self.minibatches(rollouts, size=self.micro_batch_size):
            batch = make_batch(chunk, self.pad_id, ("sampler_logp",))
            scores = forward(self.policy.model, batch, entropy=True)
            logp = scores["logp"] if self.old_logp == "recompute" else batch.tensors["sampler_logp"]
            for r, lp in zip(chunk, unpad(logp, chunk)):
                r.old_logp = lp
            entropy += float((scores["entropy"] * batch.mask).sum())
            sampler_ratio = (batch.tensors["sampler_logp"] - scores["logp"]).exp()
            sampler_dev += float(((sampler_ratio - 1).abs() * batch.mask).sum())
            tokens += float(batch.mask.sum())
            if self.ref_model is not None:
                for r, lp in zip(chunk, unpad(forward(self.ref_model, batch)["logp"], chunk)):
                    r.ref_logp = lp
            if self.critic_active:
                for r, v in zip(chunk, unpad(self.values(batch, None), chunk)):
                    r.old_values = v
        tokens = max(tokens, 1.0)
        stats = {"entropy": entropy / tokens}
        if self.old_logp == "recompute":
            stats["sampler_ratio_dev"] = sampler_dev / tokens
        return stats

    def values(self, batch: TokenBatch, policy_scores: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """Critic values (batch, width - 1): from the policy's own pass with a shared
        backbone, else from the separate critic."""
        if self.critic_model is None:
            scores = policy_scores or forward(self.policy.model, batch, self.value_head)
            return scores["values"]
        return forward(self.critic_model, batch, self.value_head)["values"]

    def update(self, rollouts: list[Rollout], iteration: int) -> dict[str, float]:
        """Clipped-ratio epochs over shuffled minibatches. A minibatch larger than
        `micro_batch_size` traces is run as micro batches whose gradients accumulate before
        the one optimizer step, each weighted by its share of the minibatch's tokens (rows,
        under seq-mean-token-mean), so memory is bounded by the micro batch and the step
        equals the whole minibatch's (the kl_cov/clip_cov and top-entropy selections are
        then made per micro batch)."""
        model = self.policy.model
        fields = ("old_logp", "advantages") + (("ref_logp",) if self.kl_in_loss else ()) + (
            ("returns", "old_values") if self.critic_active else ())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        totals: dict[str, float] = {}
        steps, ratio_dev = 0, 0.0
        model.train()
        for _ in range(self.epochs):
            for chunk in self.minibatches(rollouts, generator):
                self.optimizer.zero_grad(set_to_none=True)
                micro = list(self.minibatches(chunk, size=self.micro_batch_size))
                weights = [self.loss_weight(m) for m in micro]
                total = sum(weights) or 1.0
                stats: dict[str, float] = {}
                for m, w in zip(micro, weights):
                    loss, micro_stats = self.micro_loss(make_batch(m, self.pad_id, fields))
                    (loss * (w / total)).backward()
                    for k, v in micro_stats.items():
                        stats[k] = stats.get(k, 0.0) + float(v) * w / total
                dev = stats.pop("ratio_dev")
                ratio_dev = dev if steps == 0 else ratio_dev  # before any optimizer step: pi_old vs the trained model
                if self.grad_clip:  # policy and critic are clipped separately; the policy's norm is logged
                    norms = [torch.nn.utils.clip_grad_norm_(g["params"], self.grad_clip)
                             for g in self.optimizer.param_groups]
                    stats["grad_norm"] = float(norms[0])
                self.optimizer.step()
                steps += 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
        model.eval()
        out = {k: v / steps for k, v in totals.items()}
        out.update(ratio_dev=ratio_dev, pg_rollouts=len(rollouts), pg_updates=steps,
                   pg_tokens=int(sum(sum(r.loss_mask) for r in rollouts)))
        return out

    def loss_weight(self, rollouts: list[Rollout]) -> float:
        """What a micro batch's mean loss stands for: its trained tokens (token-mean) or its
        rows with a trained token (seq-mean-token-mean)."""
        if self.loss_agg == "token-mean":
            return float(sum(sum(r.loss_mask) for r in rollouts))
        return float(sum(any(r.loss_mask) for r in rollouts))

    def micro_loss(self, batch: TokenBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one micro batch (policy, KL, entropy bonus, critic) and its stats."""
        shared_head = self.critic_active and self.critic_model is None
        scores = forward(self.policy.model, batch, self.value_head if shared_head else None,
                         entropy=bool(self.entropy_coef) or self.top_entropy_quantile < 1)
        t, mask = batch.tensors, batch.mask
        ratio = (scores["logp"].detach() - t["old_logp"]).exp()
        extra = {"ratio_dev": core_algos.masked_mean((ratio - 1).abs(), mask)}
        advantages = t["advantages"]
        if self.top_entropy_quantile < 1:  # the 80/20 rule: the policy gradient only on high-entropy tokens
            keep = core_algos.top_entropy_mask(scores["entropy"], mask, self.top_entropy_quantile)
            advantages = advantages * keep
            extra["entropy_kept"] = core_algos.masked_mean(keep, mask)
        loss, stats = self.policy_loss(scores["logp"], t["old_logp"], advantages, mask, clip_low=self.clip_low,
                                       clip_high=self.clip_high, agg=self.loss_agg, **self.loss_options)
        stats = {"pg_loss": loss.detach(), **stats, **extra}
        if self.kl_in_loss:
            kl_loss = core_algos.aggregate(core_algos.kl_penalty(scores["logp"], t["ref_logp"], self.kl_estimator),
                                           mask, self.loss_agg)
            loss = loss + self.kl_coef * kl_loss
            stats["kl"] = kl_loss.detach()
        if self.entropy_coef:
            loss = loss - self.entropy_coef * core_algos.aggregate(scores["entropy"], mask, self.loss_agg)
        if self.critic_active:
            v_loss, v_clip = core_algos.value_loss(self.values(batch, scores), t["old_values"], t["returns"],
                                                   mask, self.value_clip)
            loss = loss + self.vf_coef * v_loss
            stats.update(value_loss=v_loss.detach(), value_clip_frac=v_clip)
        return loss, stats
