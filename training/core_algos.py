"""The algorithmic core of the policy-gradient trainers, as pure functions on tensors.

Nothing here touches a model, an optimizer or a tokenizer, so every formula can be checked
by hand (tests/test_core_algos.py). Conventions, as in verl's `core_algos.py`:

* token tensors are (batch, length) over *response* positions: position t is the t-th
  generated token; `mask` is 1.0 where a token exists and counts in the loss;
* `logp` is log pi(token) under the model being trained, `old_logp` under the policy that
  sampled it, `ref_logp` under the frozen reference;
* a new policy loss or KL estimator is one decorated function; trainers look it up by the
  config string it was registered under (`POLICY_LOSSES`, `KL_ESTIMATORS`). Advantage
  estimators have no registry: their inputs differ (token rewards and values, group
  scores, node values), so each trainer calls the one its options name;
* a search tree never reaches this module: the callers read the numbers an estimator
  needs out of it (`training.rollouts.tree_values`) and pass them as tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

POLICY_LOSSES: dict[str, Callable[..., Any]] = {}
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def _register(registry: dict[str, Callable], name: str) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        if name in registry:
            raise ValueError(f"{name!r} is registered twice")
        registry[name] = fn
        return fn
    return decorate


def lookup(registry: dict[str, Callable], name: str, key: str) -> Callable:
    """`registry[name]`, or one clear error naming the config `key` and the choices."""
    if name not in registry:
        raise ValueError(f"{key}: {name!r} is not one of {sorted(registry)}")
    return registry[name]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over positions where `mask` is 1 (all of them, or along `dim`)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """Reduce a (batch, length) loss to a scalar.

    token-mean: every token weighs the same (long answers weigh more; verl's default);
    seq-mean-token-mean: each sequence's token mean, then the mean over sequences (the
    original GRPO).
    """
    if mode == "token-mean":
        return masked_mean(loss, mask)
    if mode == "seq-mean-token-mean":
        rows = mask.sum(-1) > 0
        return masked_mean(loss, mask, dim=-1)[rows].mean() if rows.any() else loss.sum() * 0.0
    raise ValueError(f"loss_agg: {mode!r} is not one of ['seq-mean-token-mean', 'token-mean']")


# ---------------------------------------------------------------- advantage estimators


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                   gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens.

    rewards, values, mask: (batch, length), right-padded (each row's tokens come first);
    `values[:, t]` is V of the state before token t, and the value after a row's last token
    is 0 (the episode ends there).
    Returns (advantages, returns), both (batch, length) and zero where `mask` is 0;
    returns = advantages + values are the value targets.
    """
    mask = mask.to(rewards.dtype)
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        running = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * running
        advantages[:, t] = running * mask[:, t]
    return advantages, (advantages + values) * mask


def group_members(groups: Sequence[Any]) -> list[list[int]]:
    """Indices of each group's samples, groups in order of first appearance."""
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    return list(by_group.values())


def group_advantages(scores: torch.Tensor, groups: Sequence[Any], norm_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024): (score - group mean) / group std.

    scores: (n,), one per sample; groups: n hashable group labels (samples of one problem,
    or siblings in a tree). `norm_std=False` keeps the centred score (Dr. GRPO). The std is
    the unbiased one, as in the GRPO reference code; a group of one gets advantage 0.
    Returns (n,).
    """
    out = torch.zeros_like(scores)
    for members in group_members(groups):
        idx = torch.tensor(members)
        group = scores[idx]
        if len(members) == 1:
            continue
        centred = group - group.mean()
        std = group.std()
        out[idx] = centred / (std + eps) if norm_std and std > 0 else centred  # equal scores: all 0
    return out


TREE_ADVANTAGES = ("local", "global", "both")


def tree_advantages(values: torch.Tensor, parent_values: torch.Tensor, root_value: float,
                    mode: str = "local") -> torch.Tensor:
    """TreeRL's step advantages (Hou et al. 2025) from node values V (TreeRL's V(node) is the
    mean verifier reward of the finished traces below the node): local: V(node) - V(parent),
    what this step changed; global: V(node) - V(root), how good the state is against the
    problem's mean; both: their sum, TreeRL's choice. (TreeRL also divides by
    sqrt(#leaves below); plateau instead credits each shared step once.)
    values, parent_values: (n,), one per non-root node; root_value: V(root). Returns (n,)."""
    if mode not in TREE_ADVANTAGES:
        raise ValueError(f"trainer.tree_advantage: {mode!r} is not one of {list(TREE_ADVANTAGES)}")
    local, glob = values - parent_values, values - root_value
    return local if mode == "local" else glob if mode == "global" else local + glob


def pass_at_k_advantages(scores: torch.Tensor, groups: Sequence[Any], k: int, norm_std: bool = True,
                         eps: float = 1e-6) -> torch.Tensor:
    """The analytic pass@k group advantage (Chen et al. 2025, "Pass@k Training"): the
    expected pass@k reward of the k-subsets of a group containing each sample, minus the
    group's mean pass@k, over its std. With N samples, N- incorrect (score <= 0):
    mean R = 1 - C(N-, k) / C(N, k), std = sqrt(R (1 - R)); a correct sample gets
    (1 - R) / std, an incorrect one (1 - R - C(N- - 1, k - 1) / C(N - 1, k - 1)) / std.
    k = 1 is GRPO with the population std. A group smaller than k uses k = its size; a group
    whose every k-subset passes (or none does) gets 0. scores, result: (n,)."""
    if k < 1:
        raise ValueError(f"trainer.pass_k must be >= 1, got {k}")
    out = torch.zeros_like(scores)
    for members in group_members(groups):
        idx = torch.tensor(members)
        correct = scores[idx] > 0
        size, wrong, kk = len(members), int((~correct).sum()), min(k, len(members))
        mean = 1.0 - math.comb(wrong, kk) / math.comb(size, kk)
        if mean in (0.0, 1.0):
            continue
        wrong_adv = 1.0 - mean - math.comb(wrong - 1, kk - 1) / math.comb(size - 1, kk - 1)
        std = math.sqrt(mean * (1.0 - mean)) + eps if norm_std else 1.0
        out[idx] = torch.where(correct, (1.0 - mean) / std, wrong_adv / std).to(scores.dtype)
    return out


# ---------------------------------------------------------------- losses


@_register(POLICY_LOSSES, "ppo")
def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip_low: float = 0.2, clip_high: float | None = None,
                    agg: str = "token-mean") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) with
    r = exp(logp - old_logp); `clip_high` None means symmetric (DAPO's clip-higher sets it
    larger). All inputs (batch, length). Returns the scalar loss and detached stats:
    `clip_frac` (share of tokens whose clipped term was chosen) and `approx_kl`
    (mean old_logp - logp)."""
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, agg)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": masked_mean(old_logp - logp, mask)}
    return loss, stats


def top_covariance(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, fraction: float,
                   exclude: torch.Tensor | None = None) -> torch.Tensor:
    """A 0/1 (batch, length) mask of the `fraction` of masked tokens (at least one) with the
    highest centred covariance (A - mean A)(logp - mean logp) (Cui et al. 2025): the tokens
    whose update moves the policy's entropy most. `exclude` (bool) tokens are never picked."""
    if not 0 < fraction <= 1:
        raise ValueError(f"trainer.cov_fraction must be in (0, 1], got {fraction}")
    lp = logp.detach()
    cov = (advantages - masked_mean(advantages, mask)) * (lp - masked_mean(lp, mask))
    blocked = (mask <= 0) if exclude is None else (mask <= 0) | exclude
    cov = cov.masked_fill(blocked, float("-inf")).flatten()
    picked = torch.zeros_like(cov)
    count = min(max(1, int(fraction * float(mask.sum()))), int((cov > float("-inf")).sum()))
    if count:
        picked[torch.topk(cov, count).indices] = 1.0
    return picked.view_as(mask)


@_register(POLICY_LOSSES, "kl_cov")
def kl_cov_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                       clip_low: float = 0.2, clip_high: float | None = None, agg: str = "token-mean",
                       cov_fraction: float = 2e-3,
                       kl_cov_coef: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KL-Cov (Cui et al. 2025, as verl's recipe): the unclipped surrogate -r A on every token,
    plus kl_cov_coef * |logp - old_logp| on the `cov_fraction` of tokens with the highest
    log-prob/advantage covariance (`top_covariance`), which keeps those from collapsing the
    entropy. The clip range is not used. `cov_frac` is the share of tokens penalised."""
    ratio = torch.exp(logp - old_logp)
    picked = top_covariance(logp, advantages, mask, cov_fraction)
    loss = aggregate(-advantages * ratio + kl_cov_coef * picked * (logp - old_logp).abs(), mask, agg)
    with torch.no_grad():
        stats = {"cov_frac": masked_mean(picked, mask), "approx_kl": masked_mean(old_logp - logp, mask)}
    return loss, stats


@_register(POLICY_LOSSES, "clip_cov")
def clip_cov_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                         clip_low: float = 0.2, clip_high: float | None = None, agg: str = "token-mean",
                         cov_fraction: float = 2e-4) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clip-Cov (Cui et al. 2025): the PPO clipped surrogate, except that the `cov_fraction`
    of tokens with the highest covariance (among those PPO did not already clip) get no
    gradient. verl picks them at random among tokens whose covariance lies in [1, 5]; plateau
    takes the top ones, which is deterministic and needs no bounds tuned to a batch size."""
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    picked = top_covariance(logp, advantages, mask, cov_fraction, exclude=clipped > unclipped)
    loss = aggregate(torch.maximum(unclipped, clipped) * (1.0 - picked), mask, agg)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean((clipped > unclipped).float(), mask), "cov_frac": masked_mean(picked, mask),
                 "approx_kl": masked_mean(old_logp - logp, mask)}
    return loss, stats


def top_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, quantile: float) -> torch.Tensor:
    """A 0/1 (batch, length) mask of the masked tokens whose entropy is at or above the
    (1 - quantile) quantile: the "forking" tokens of Wang et al. 2025 (the 80/20 result;
    TRL's `top_entropy_quantile`). quantile 1 keeps every token."""
    if not 0 < quantile <= 1:
        raise ValueError(f"trainer.top_entropy_quantile must be in (0, 1], got {quantile}")
    if quantile == 1 or not mask.any():
        return mask
    threshold = torch.quantile(entropy.detach().float()[mask > 0], 1.0 - quantile)
    return ((entropy >= threshold) & (mask > 0)).to(mask.dtype)


def weight_negative_advantages(advantages: torch.Tensor, weight: float) -> torch.Tensor:
    """Negative advantages times `weight`, positive ones as they are: how much an update
    pushes down what did worse than expected against how much it pulls up what did better.
    Below 1 leans toward EI's "learn the successes" (Arnal et al. 2025, asymmetric
    REINFORCE); above 1 toward negative-sample reinforcement, which Zhu et al. 2025 find
    keeps pass@k at large k (their W-REINFORCE weighs positives by 0.1: about `weight` 10,
    since AdamW's step hardly depends on the loss's scale; scale a KL or entropy coefficient
    with it). The sign is per token, after any whitening: under GAE some tokens of a
    success can be negative, and under tree advantages it is the step's."""
    if weight < 0:
        raise ValueError(f"trainer.negative_weight must be >= 0, got {weight}")
    return advantages if weight == 1 else torch.where(advantages < 0, advantages * weight, advantages)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss 0.5 * max((V - R)^2, (V_clipped - R)^2), with V_clipped
    = old V + clamp(V - old V, -clip, clip); `clip` None is the plain squared error.
    All inputs (batch, length). Returns (loss, share of tokens where the clipped term won)."""
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros(())
    clipped = (old_values + torch.clamp(values - old_values, -clip, clip) - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


@_register(KL_ESTIMATORS, "k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """log pi - log pi_ref: unbiased for KL(pi || ref) per sampled token, can be negative."""
    return logp - ref_logp


@_register(KL_ESTIMATORS, "k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """0.5 (log pi - log pi_ref)^2: biased, low variance, never negative."""
    return 0.5 * (logp - ref_logp) ** 2


@_register(KL_ESTIMATORS, "k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """exp(ref - logp) - (ref - logp) - 1 (Schulman's k3, GRPO's choice): unbiased,
    never negative. The log-ratio is clamped to [-20, 20] so exp cannot overflow."""
    log_ratio = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate, (batch, length), by `estimator` name (k1 | k2 | k3)."""
    return lookup(KL_ESTIMATORS, estimator, "kl_estimator")(logp, ref_logp)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: (..., vocab) -> (...)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
