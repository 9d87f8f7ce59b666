"""GRPO (Shao et al. 2024): no critic; each trace's advantage is its score relative to the
other samples of the same problem (`group: problem`), or each tree step's value relative
to its siblings' (`group: siblings`, values = mean leaf reward below a node; each shared
step credited once). The trace score follows `reward` (`training.rewards.trace_scores`):
the verifier's outcome (sparse), the sum of the task's step rewards (dense), or the run's
ORM's P(correct) (orm); sibling groups use the tree's verifier rewards, so sparse only.
`tree_advantage` (local | global | both) instead credits each tree step with TreeRL's
V(node) - V(parent), V(node) - V(root) or their sum, without group normalisation; and
`advantage: pass_at_k` replaces the group advantage by the analytic pass@k one (Chen et
al. 2025) for k = `pass_k`. Options researchers compare: std normalisation on/off
(Dr. GRPO turns it off), the KL penalty in the loss (coefficient, estimator) or none, the
clip range, epochs and minibatches — all handled by `training.pg`.
"""

from __future__ import annotations

from functools import partial

import torch

from training import core_algos
from training.pg import PolicyGradientTrainer
from training.rewards import trace_scores
from training.rollouts import Rollout, assign_step_advantages, sibling_step_advantages, tree_step_advantages

GROUPS = ("problem", "siblings")
ADVANTAGES = ("grpo", "pass_at_k")


class GRPO(PolicyGradientTrainer):
    name = "grpo"

    def __init__(self, *, group: str = "problem", norm_std: bool = True, advantage: str = "grpo", pass_k: int = 4,
                 tree_advantage: str | None = None, kl_coef: float = 0.04, kl_estimator: str = "k3", **kwargs):
        super().__init__(kl_coef=kl_coef, kl_estimator=kl_estimator, **kwargs)
        for key, value, choices in (("group", group, GROUPS), ("advantage", advantage, ADVANTAGES)):
            if value not in choices:
                raise ValueError(f"trainer.{key}: {value!r} is not one of {list(choices)}")
        if tree_advantage is not None and tree_advantage not in core_algos.TREE_ADVANTAGES:
            raise ValueError(f"trainer.tree_advantage: {tree_advantage!r} is not one of "
                             f"{[None, *core_algos.TREE_ADVANTAGES]}")
        for key, on in (("group=siblings", group == "siblings"), ("advantage=pass_at_k", advantage == "pass_at_k"),
                        (f"tree_advantage={tree_advantage}", tree_advantage is not None)):
            if on and self.reward != "sparse":
                raise ValueError(f"trainer.{key} uses the verifier's 0/1 rewards; trainer.reward={self.reward} "
                                 "needs the plain group advantage")
        if sum((group == "siblings", advantage == "pass_at_k", tree_advantage is not None)) > 1:
            raise ValueError("trainer.group=siblings, trainer.advantage=pass_at_k and trainer.tree_advantage are "
                             "alternatives: set one")
        self.group, self.norm_std, self.advantage, self.pass_k = group, norm_std, advantage, pass_k
        self.tree_advantage = tree_advantage

    def assign_advantages(self, rollouts: list[Rollout]) -> dict[str, float]:
        if self.group == "siblings" or self.tree_advantage is not None:
            per_tree = (partial(sibling_step_advantages, norm_std=self.norm_std) if self.tree_advantage is None
                        else partial(tree_step_advantages, mode=self.tree_advantage))
            assign_step_advantages(rollouts, per_tree)
            score_mean = None
        else:
            values = trace_scores(self.task, [(r.result.problem, r.trace) for r in rollouts], self.reward, self.orm)
            scores = torch.tensor(values, dtype=torch.float64)
            groups = [id(r.result) for r in rollouts]
            adv = (core_algos.pass_at_k_advantages(scores, groups, self.pass_k, self.norm_std)
                   if self.advantage == "pass_at_k" else core_algos.group_advantages(scores, groups, self.norm_std))
            for r, a in zip(rollouts, adv.tolist()):
                r.advantages = [a] * len(r.response_ids)
            score_mean = float(scores.mean())
        informative = sum(any(a != 0.0 for a in r.advantages) for r in rollouts)
        stats = {"informative_rollouts": informative / len(rollouts)}
        return stats if score_mean is None else {**stats, "mean_trace_score": score_mean}
