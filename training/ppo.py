"""PPO (Schulman et al. 2017) as in Havrilla et al. 2024: actor + critic, GAE over
token-level rewards, clipped ratio and value objectives, and a per-token KL penalty
against a frozen copy of the initial policy (coefficient 0.05, the paper's).

Rewards (`reward`, `training.rewards.step_scores`): `sparse` puts the outcome on the final
token; `dense` gives each text step the task's step reward on its last token; `orm` gives
each step the score the run's outcome reward model assigns to the trace up to that step.
Rollouts from tree search (depth > 1) can instead use tree advantages (`advantage: tree`,
or `auto`): with V(node) the mean leaf reward below a node, a step's advantage is
V(node) - V(parent) (`tree_advantage: local`), V(node) - V(root) (`global`) or their sum
(`both`, TreeRL's), and each shared step is credited once. Tree advantages use the
verifier's leaf rewards, so they go with `reward: sparse` only (`auto` picks GAE for the
other rewards).
"""

from __future__ import annotations

import copy
from functools import partial

import torch

from search import SearchResult
from training import core_algos
from training.pg import PolicyGradientTrainer
from training.rewards import step_scores
from training.rollouts import Rollout, assign_step_advantages, text_step_ends, tree_step_advantages
from training.token_batch import ValueHead

ADVANTAGES = ("gae", "tree", "auto")
CRITICS = ("shared", "separate")
KL_PLACES = ("reward", "loss")


def tree_depth(result: SearchResult) -> int:
    return max(d["depth"] for _, d in result.tree.graph.nodes(data=True))


class PPO(PolicyGradientTrainer):
    name = "ppo"

    def __init__(self, *, advantage: str = "auto", gamma: float = 1.0, lam: float = 0.95,
                 whiten_advantages: bool = True, critic: str = "shared", critic_lr: float | None = None,
                 vf_coef: float = 0.5, value_clip: float | None = 0.2, kl_coef: float = 0.05,
                 kl_estimator: str = "k1", kl_loss_estimator: str = "k3", kl_in: str = "reward",
                 tree_advantage: str = "local", **kwargs):
        # The base class puts `kl_estimator` into the loss. k1 has the wrong gradient there: on
        # reused samples it only lowers the likelihood of every sampled token (with tree
        # advantages, where most tokens carry no advantage, that alone collapsed the tiny policy
        # to reward 0 in one iteration), so the loss gets its own estimator.
        for key, value in (("kl_estimator", kl_estimator), ("kl_loss_estimator", kl_loss_estimator)):
            core_algos.lookup(core_algos.KL_ESTIMATORS, value, f"trainer.{key}")
        super().__init__(kl_coef=kl_coef, kl_estimator=kl_loss_estimator, **kwargs)
        self.reward_kl_estimator = kl_estimator
        for key, value, choices in (("advantage", advantage, ADVANTAGES), ("critic", critic, CRITICS),
                                    ("kl_in", kl_in, KL_PLACES)):
            if value not in choices:
                raise ValueError(f"trainer.{key}: {value!r} is not one of {list(choices)}")
        if advantage == "tree" and self.reward != "sparse":
            raise ValueError(f"trainer.advantage=tree uses the verifier's leaf rewards; trainer.reward={self.reward} "
                             "needs advantage=gae (or auto)")
        if tree_advantage not in core_algos.TREE_ADVANTAGES:
            raise ValueError(f"trainer.tree_advantage: {tree_advantage!r} is not one of "
                             f"{list(core_algos.TREE_ADVANTAGES)}")
        self.advantage, self.gamma, self.lam, self.tree_advantage = advantage, gamma, lam, tree_advantage
        self.whiten_advantages, self.critic, self.vf_coef, self.value_clip = whiten_advantages, critic, vf_coef, value_clip
        self.critic_lr = self.lr if critic_lr is None else critic_lr
        self.kl_in = kl_in
        self.uses_critic = advantage != "tree"

    def build_critic(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        self.value_head = ValueHead(model.config.hidden_size)
        if self.critic == "separate":  # initialised from the actor, as verl and the paper do
            self.critic_model = copy.deepcopy(model).train()
            return [*self.critic_model.parameters(), *self.value_head.parameters()]
        return list(self.value_head.parameters())

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        deep = any(tree_depth(r) > 1 for r in results) and self.reward == "sparse"
        self.mode = "tree" if self.advantage == "tree" or (self.advantage == "auto" and deep) else "gae"
        self.critic_active = self.mode == "gae"
        # KL in the reward needs per-token rewards; tree advantages have none, so it moves to the loss
        self.kl_in_loss = self.ref_model is not None and (self.kl_in == "loss" or self.mode == "tree")
        return {**super().step(iteration, results), "tree_advantage": float(self.mode == "tree")}

    def assign_advantages(self, rollouts: list[Rollout]) -> dict[str, float]:
        if self.mode == "tree":
            assign_step_advantages(rollouts, partial(tree_step_advantages, mode=self.tree_advantage))
            return {}
        rewards = self.token_rewards(rollouts)
        width = max(len(r.response_ids) for r in rollouts)
        pad = lambda rows: torch.tensor([row + [0.0] * (width - len(row)) for row in rows])  # noqa: E731
        mask = pad([[1.0] * len(r.response_ids) for r in rollouts])
        adv, returns = core_algos.gae_advantages(pad(rewards), pad([r.old_values for r in rollouts]), mask,
                                                 self.gamma, self.lam)
        trained = pad([r.loss_mask for r in rollouts])  # context tokens (off_context steps) carry no statistics
        if self.whiten_advantages:
            mean = core_algos.masked_mean(adv, trained)
            std = core_algos.masked_mean((adv - mean) ** 2, trained).sqrt()
            adv = (adv - mean) / (std + 1e-8) * mask
        for i, r in enumerate(rollouts):
            n = len(r.response_ids)
            r.advantages, r.returns = adv[i, :n].tolist(), returns[i, :n].tolist()
        return {"mean_token_reward_sum": float(sum(map(sum, rewards)) / len(rollouts)),
                "mean_return": float(core_algos.masked_mean(returns, trained))}

    def token_rewards(self, rollouts: list[Rollout]) -> list[list[float]]:
        """Per response token: each text step's reward on its last token, minus the KL
        penalty kl_coef * KL(old, ref) on every trained token when the KL sits in the reward
        (context tokens have no sampler log-prob to measure it with)."""
        per_step = step_scores(self.task, [(r.result.problem, r.trace) for r in rollouts], self.reward, self.orm)
        out = []
        for r, scores in zip(rollouts, per_step):
            row = [0.0] * len(r.response_ids)
            for end, score in zip(text_step_ends(self.policy, self.task, r), scores):
                row[end - 1] += score
            if self.ref_model is not None and not self.kl_in_loss:
                kl = core_algos.kl_penalty(torch.tensor(r.old_logp), torch.tensor(r.ref_logp), self.reward_kl_estimator)
                row = [x - self.kl_coef * float(k) * m for x, k, m in zip(row, kl, r.loss_mask)]
            out.append(row)
        return out
