"""The algorithmic core of the policy-gradient trainers, as pure functions on tensors.

Nothing here touches a model, an optimizer or a tokenizer, so every formula can be checked
by hand (tests/test_core_algos.py). Conventions, as in verl's `core_algos.py`:

* token tensors are (batch, length) over *response* positions: position t is the t-th
  generated token; `mask` is 1.0 where a token exists and counts in the loss;
* `logp` is log pi(token) under the model being trained, `old_logp` under the policy that
  sampled it, `ref_logp` under the frozen reference;
* a new estimator or loss is one decorated function; trainers look them up by the config
  string they were registered under (`ADVANTAGE_ESTIMATORS`, `POLICY_LOSSES`,
  `KL_ESTIMATORS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from search.tree import SearchTree

ADVANTAGE_ESTIMATORS: dict[str, Callable[..., Any]] = {}
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


@_register(ADVANTAGE_ESTIMATORS, "gae")
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


@_register(ADVANTAGE_ESTIMATORS, "grpo")
def group_advantages(scores: torch.Tensor, groups: Sequence[Any], norm_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024): (score - group mean) / group std.

    scores: (n,), one per sample; groups: n hashable group labels (samples of one problem,
    or siblings in a tree). `norm_std=False` keeps the centred score (Dr. GRPO). The std is
    the unbiased one, as in the GRPO reference code; a group of one gets advantage 0.
    Returns (n,).
    """
    out = torch.zeros_like(scores)
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        idx = torch.tensor(members)
        group = scores[idx]
        if len(members) == 1:
            continue
        centred = group - group.mean()
        std = group.std()
        out[idx] = centred / (std + eps) if norm_std and std > 0 else centred  # equal scores: all 0
    return out


def tree_values(tree: SearchTree) -> dict[int, float]:
    """Each node's value = mean verifier reward of the terminal leaves below it (itself
    included), the TreeRL estimate. Nodes with no finished trace below are left out."""
    totals: dict[int, tuple[float, int]] = {}
    for leaf in tree.terminals():
        reward = float(tree[leaf]["reward"] or 0.0)
        for node in tree.path(leaf):
            s, n = totals.get(node, (0.0, 0))
            totals[node] = (s + reward, n + 1)
    return {node: s / n for node, (s, n) in totals.items()}


@_register(ADVANTAGE_ESTIMATORS, "tree")
def tree_advantages(tree: SearchTree) -> dict[int, float]:
    """A step's advantage = V(node it creates) - V(its parent), V from `tree_values`
    (the local advantage of TreeRL, Hou et al. 2025). Returns {node id: advantage} for
    every non-root node with a finished trace below it."""
    values = tree_values(tree)
    return {n: v - values[tree.parent(n)] for n, v in values.items() if n != tree.root}


def sibling_advantages(tree: SearchTree, norm_std: bool = True, eps: float = 1e-6) -> dict[int, float]:
    """GRPO over siblings: each step's `tree_values` value relative to its siblings'
    (children of the same parent). On a depth-1 tree this is GRPO over the problem's
    samples. Returns {node id: advantage}."""
    values = tree_values(tree)
    nodes = [n for n in values if n != tree.root]
    scores = torch.tensor([values[n] for n in nodes], dtype=torch.float64)
    adv = group_advantages(scores, [tree.parent(n) for n in nodes], norm_std, eps)
    return {n: float(a) for n, a in zip(nodes, adv)}


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
