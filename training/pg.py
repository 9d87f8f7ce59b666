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
import dataclasses
import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from policies import Policy
from search import SearchResult
from tasks import Task
from training import core_algos
from training.rewards import RewardModel, check_reward
from training.rollouts import Rollout, build_rollouts, mask_off_context
from training.sft import collate, labelled_logprobs
from training.step_runner import InProcess, StepRunner

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


class LastHidden(torch.nn.Module):
    """A causal LM's last hidden state and nothing else: the separate critic's backbone. Its
    logits are no output, so data-parallel DDP sees the LM head as what it is, unused."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]


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
                 micro_batch_size: int | None = None, name: str | None = None, seed: int = 0, progress: bool = False,
                 runner: StepRunner | None = None):
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
                for r, v in zip(chunk, unpad(self.values(batch, None, self.train_modules()), chunk)):
                    r.old_values = v
        tokens = max(tokens, 1.0)
        stats = {"entropy": entropy / tokens}
        if self.old_logp == "recompute":
            stats["sampler_ratio_dev"] = sampler_dev / tokens
        return stats

    def train_modules(self) -> dict[str, torch.nn.Module]:
        """What the optimizer steps, under the names the update reads: the policy and, with a
        critic, its value head and separate backbone (`LastHidden`)."""
        modules = {"policy": self.policy.model}
        if self.value_head is not None:
            modules["value_head"] = self.value_head
        if self.critic_model is not None:
            modules["critic"] = LastHidden(self.critic_model)
        return modules

    def values(self, batch: TokenBatch, policy_scores: dict[str, torch.Tensor] | None,
               modules: dict[str, torch.nn.Module]) -> torch.Tensor:
        """Critic values (batch, width - 1): from the policy's own pass with a shared
        backbone, else from the separate critic (`modules` as `train_modules` names them)."""
        if "critic" not in modules:
            scores = policy_scores or forward(modules["policy"], batch, modules["value_head"])
            return scores["values"]
        hidden = modules["critic"](input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"])
        return modules["value_head"](hidden[:, :-1])

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
        fields = ("old_logp", "advantages") + (("ref_logp",) if self.kl_in_loss else ()) + (
            ("returns", "old_values") if self.critic_active else ())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        totals: dict[str, float] = {}
        steps, ratio_dev = 0, 0.0
        model.train()
        for _ in range(self.epochs):
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
                if self.grad_clip:  # policy and critic are clipped separately; the policy's norm is logged
                    norms = [torch.nn.utils.clip_grad_norm_(g["params"], self.grad_clip) for g in optimizer.param_groups]
                    stats["grad_norm"] = float(norms[0])
                optimizer.step()
                steps += 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
        model.eval()
        return {**{k: v / steps for k, v in totals.items()}, "ratio_dev": ratio_dev, "pg_updates": steps}

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
        scores = forward(modules["policy"], batch, modules["value_head"] if shared_head else None,
                         entropy=bool(self.entropy_coef) or self.top_entropy_quantile < 1)
        t, mask = batch.tensors, batch.mask
        ratio = (scores["logp"].detach() - t["old_logp"]).exp()
        token_stats = {"ratio_dev": core_algos.masked_mean((ratio - 1).abs(), mask)}
        advantages = t["advantages"]
        if self.top_entropy_quantile < 1:  # the 80/20 rule: the policy gradient only on high-entropy tokens
            keep = core_algos.top_entropy_mask(scores["entropy"], mask, self.top_entropy_quantile)
            advantages = advantages * keep
            token_stats["entropy_kept"] = core_algos.masked_mean(keep, mask)
        loss, loss_stats = self.policy_loss(scores["logp"], t["old_logp"], advantages, mask, clip_low=self.clip_low,
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
