"""The policy-gradient update itself: clipped-ratio epochs over shuffled minibatches, micro
batches whose gradients accumulate into one optimizer step, and each data-parallel worker's
slice of a micro batch.

`MinibatchUpdate` is the part of `training.pg.PolicyGradientTrainer` that runs where the
update runs: it reads the trainer's settings from `self` (declared below) and is handed the
modules and the optimizer it trains, so that `PolicyGradientTrainer.update` can call it in
this process or send a settings-only replica of the trainer to Ray Train workers
(`training.step_runner`). The trainer's set-up, state and pre-update scoring stay in
`training.pg`; the formulas are `training.core_algos`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from training import core_algos
from training.rollouts import Rollout
from training.token_batch import TokenBatch, forward, make_batch


@dataclass
class MicroLoss:
    """One micro batch's loss in the two parts data parallelism weights apart: `policy` (the
    policy gradient, KL and entropy terms, aggregated by `loss_agg`) and the critic's `value`
    loss (a token mean, times `vf_coef`; None without a critic). Its stats likewise:
    `agg_stats` aggregated by `loss_agg` (pg_loss, kl), `token_stats` token means (the policy
    loss's own stats, ratio_dev, the critic's)."""

    policy: torch.Tensor
    value: torch.Tensor | None
    agg_stats: dict[str, torch.Tensor]
    token_stats: dict[str, torch.Tensor] = field(default_factory=dict)


def sum_over_workers(stats: dict[str, float]) -> dict[str, float]:
    """Each stat summed over the data-parallel world (each worker holds its slices' share)."""
    import torch.distributed as dist

    keys = sorted(stats)
    values = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


class MinibatchUpdate:
    """Minibatch epochs of the clipped-ratio loss (a mixin of `PolicyGradientTrainer`)."""

    # The trainer's settings this part reads (set by `PolicyGradientTrainer.__init__` and, per
    # iteration, by the subclass's `step`).
    epochs: int
    minibatch_size: int
    micro_batch_size: int
    grad_clip: float | None
    seed: int
    loss_agg: str
    policy_loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
    loss_options: dict[str, Any]
    clip_low: float
    clip_high: float | None
    kl_in_loss: bool
    kl_coef: float
    kl_estimator: str
    entropy_coef: float
    top_entropy_quantile: float
    negative_weight: float
    critic_active: bool
    vf_coef: float
    value_clip: float | None
    old_logp: str
    score_in_update: bool
    target_kl: float | None

    def minibatches(self, rollouts: list[Rollout], generator: torch.Generator | None = None, size: int | None = None):
        order = torch.randperm(len(rollouts), generator=generator).tolist() if generator else range(len(rollouts))
        order, size = list(order), size or self.minibatch_size
        for start in range(0, len(order), size):
            yield [rollouts[i] for i in order[start : start + size]]

    def values(self, batch: TokenBatch, policy_scores: dict[str, torch.Tensor] | None,
               modules: dict[str, torch.nn.Module]) -> torch.Tensor:
        """Critic values (batch, width - 1): from the policy's own pass with a shared
        backbone, else from the separate critic (`modules` as `train_modules` names them)."""
        if "critic" not in modules:
            scores = policy_scores or forward(modules["policy"], batch, modules["value_head"])
            return scores["values"]
        hidden = modules["critic"](input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"])
        return modules["value_head"](hidden[:, :-1])

    def train_minibatches(self, rollouts: list[Rollout], iteration: int, pad_id: int,
                          modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                          shard: tuple[int, int] = (0, 1)) -> dict[str, float]:
        """The update as a trainer step (`training.step_runner`). A minibatch larger than
        `micro_batch_size` traces is run as micro batches whose gradients accumulate before
        the one optimizer step, each weighted by its share of the minibatch's tokens (rows,
        under seq-mean-token-mean), so memory is bounded by the micro batch and the step
        equals the whole minibatch's (the kl_cov/clip_cov and top-entropy selections are
        then made per micro batch). With `shard=(rank, world)` this process runs only its
        slice of every micro batch (`slice_backward`), and DDP's gradient average over the
        world is the whole minibatch's gradient."""
        model = modules["policy"]
        pi_old = "sampler_logp" if self.score_in_update else "old_logp"  # a one-step update reads its own pi_old
        fields = (pi_old, "advantages") + (("ref_logp",) if self.kl_in_loss else ()) + (
            ("returns", "old_values") if self.critic_active else ())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        totals: dict[str, float] = {}
        steps, ratio_dev, stopped = 0, 0.0, False
        model.train()
        for _ in range(self.epochs):
            if stopped:
                break
            for chunk in self.minibatches(rollouts, generator):
                optimizer.zero_grad(set_to_none=True)
                micro = list(self.minibatches(chunk, size=self.micro_batch_size))
                total = sum(self.loss_weight(m) for m in micro) or 1.0
                stats: dict[str, float] = {}
                for m in micro:
                    for k, v in self.slice_backward(m, total, shard, modules, pad_id, fields).items():
                        stats[k] = stats.get(k, 0.0) + v
                if shard[1] > 1:
                    stats = sum_over_workers(stats)
                dev = stats.pop("ratio_dev")
                ratio_dev = dev if steps == 0 else ratio_dev  # before any optimizer step: pi_old vs the trained model
                if self.target_kl is not None and steps and not stats["approx_kl_k3"] <= 1.5 * self.target_kl:
                    # this minibatch's step is not taken (Stable-Baselines3's early stop; NaN stops too). SB3 checks
                    # before the backward pass; here the KL is summed over micro batches and workers during it
                    stopped = True
                    break
                if self.grad_clip:  # policy and critic are clipped separately; the policy's norm is logged
                    norms = [torch.nn.utils.clip_grad_norm_(g["params"], self.grad_clip) for g in optimizer.param_groups]
                    stats["grad_norm"] = float(norms[0])
                optimizer.step()
                steps += 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
        model.eval()
        return {**{k: v / steps for k, v in totals.items()}, "ratio_dev": ratio_dev, "pg_updates": steps,
                "kl_stopped": float(stopped)}

    def slice_backward(self, micro: list[Rollout], total: float, shard: tuple[int, int],
                       modules: dict[str, torch.nn.Module], pad_id: int, fields: tuple[str, ...]) -> dict[str, float]:
        """Backpropagate this process's slice (contiguous rows, `shard=(rank, world)`) of one
        micro batch, scaled so that the slices' gradients, averaged over the world, add up to
        the micro batch's share `loss_weight(micro) / total` of the minibatch's gradient: the
        policy terms by the slice's own loss weight (its tokens, or rows, over `total`), the
        value loss, a token mean whatever `loss_agg`, by the slice's share of the micro
        batch's tokens; its stats alike. In one process the slice is the micro batch and both
        scales are its share. An empty slice runs one row at weight 0, so that it still joins
        DDP's gradient all-reduce. Returns the slice's weighted share of the micro batch's stats."""
        rank, world = shard
        rows = torch.tensor_split(torch.arange(len(micro)), world)[rank].tolist()
        part = [micro[i] for i in rows]
        tokens = lambda rs: float(sum(sum(r.loss_mask) for r in rs))  # noqa: E731
        share = self.loss_weight(part) / total
        token_share = self.loss_weight(micro) / total * tokens(part) / max(tokens(micro), 1.0)
        terms = self.micro_loss(make_batch(part or micro[:1], pad_id, fields), modules)
        loss = terms.policy * (share * world)
        if terms.value is not None:
            loss = loss + terms.value * (token_share * world)
        loss.backward()
        return {**{k: float(v) * share for k, v in terms.agg_stats.items()},
                **{k: float(v) * token_share for k, v in terms.token_stats.items()}}

    def loss_weight(self, rollouts: list[Rollout]) -> float:
        """What a micro batch's mean loss stands for: its trained tokens (token-mean) or its
        rows with a trained token (seq-mean-token-mean)."""
        if self.loss_agg == "token-mean":
            return float(sum(sum(r.loss_mask) for r in rollouts))
        return float(sum(any(r.loss_mask) for r in rollouts))

    def micro_loss(self, batch: TokenBatch, modules: dict[str, torch.nn.Module]) -> MicroLoss:
        """The loss of one micro batch (policy, KL, entropy bonus; critic) and its stats."""
        shared_head = self.critic_active and "critic" not in modules
        entropy: bool | str = False
        if self.entropy_coef:
            entropy = True  # the bonus backpropagates through it
        elif self.score_in_update or self.top_entropy_quantile < 1:
            entropy = "stat"  # a figure or a token selection: no gradient
        scores = forward(modules["policy"], batch, modules["value_head"] if shared_head else None, entropy=entropy)
        t, mask = batch.tensors, batch.mask
        token_stats = {}
        if self.score_in_update:  # one optimizer step: this forward is the pre-update scoring pass (`one_step_update`)
            old_logp = scores["logp"].detach() if self.old_logp == "recompute" else t["sampler_logp"]
            token_stats["entropy"] = core_algos.masked_mean(scores["entropy"].detach(), mask)
            if self.old_logp == "recompute":
                sampler_ratio = (t["sampler_logp"] - old_logp).exp()
                token_stats["sampler_ratio_dev"] = core_algos.masked_mean((sampler_ratio - 1).abs(), mask)
        else:
            old_logp = t["old_logp"]
        log_ratio = scores["logp"].detach() - old_logp
        ratio = log_ratio.exp()
        token_stats["ratio_dev"] = core_algos.masked_mean((ratio - 1).abs(), mask)
        # KL(pi_old || pi) by the non-negative k3 estimator, as target_kl reads it (CleanRL's approx_kl; the
        # policy loss's own `approx_kl` is the k1 mean of log pi_old - log pi, verl's ppo_kl, which can be < 0)
        token_stats["approx_kl_k3"] = core_algos.masked_mean(ratio - 1 - log_ratio, mask)
        advantages = core_algos.weight_negative_advantages(t["advantages"], self.negative_weight)
        if self.top_entropy_quantile < 1:  # the 80/20 rule: the policy gradient only on high-entropy tokens
            keep = core_algos.top_entropy_mask(scores["entropy"], mask, self.top_entropy_quantile)
            advantages = advantages * keep
            token_stats["entropy_kept"] = core_algos.masked_mean(keep, mask)
        loss, loss_stats = self.policy_loss(scores["logp"], old_logp, advantages, mask, clip_low=self.clip_low,
                                            clip_high=self.clip_high, agg=self.loss_agg, **self.loss_options)
        token_stats.update(loss_stats)  # clip_frac, approx_kl, cov_frac: token means
        agg_stats = {"pg_loss": loss.detach()}
        if self.kl_in_loss:
            kl_loss = core_algos.aggregate(core_algos.kl_penalty(scores["logp"], t["ref_logp"], self.kl_estimator),
                                           mask, self.loss_agg)
            loss = loss + self.kl_coef * kl_loss
            agg_stats["kl"] = kl_loss.detach()
        if self.entropy_coef:
            loss = loss - self.entropy_coef * core_algos.aggregate(scores["entropy"], mask, self.loss_agg)
        if not self.critic_active:
            return MicroLoss(loss, None, agg_stats, token_stats)
        v_loss, v_clip = core_algos.value_loss(self.values(batch, scores, modules), t["old_values"], t["returns"],
                                               mask, self.value_clip)
        token_stats.update(value_loss=v_loss.detach(), value_clip_frac=v_clip)
        return MicroLoss(loss, self.vf_coef * v_loss, agg_stats, token_stats)
