"""GRPO (Shao et al. 2024): no critic; each trace's advantage is its score relative to the
other samples of the same problem (`group: problem`), or each tree step's value relative
to its siblings' (`group: siblings`, values = mean leaf reward below a node; each shared
step credited once). The trace score follows `reward` (`training.rewards.trace_scores`):
the verifier's outcome (sparse), the sum of the task's step rewards (dense), or the run's
ORM's P(correct) (orm); sibling groups use the tree's verifier rewards, so sparse only.
Options researchers compare: std normalisation on/off (Dr. GRPO turns it off), the KL
penalty in the loss (coefficient, estimator) or none, the clip range, epochs and
minibatches — all handled by `training.pg`.
"""

from __future__ import annotations

import torch

from training import core_algos
from training.pg import PolicyGradientTrainer
from training.rewards import trace_scores
from training.rollouts import Rollout, credit_shared_steps_once, per_node_advantages

GROUPS = ("problem", "siblings")


class GRPO(PolicyGradientTrainer):
    name = "grpo"

    def __init__(self, *, group: str = "problem", norm_std: bool = True, kl_coef: float = 0.04,
                 kl_estimator: str = "k3", **kwargs):
        super().__init__(kl_coef=kl_coef, kl_estimator=kl_estimator, **kwargs)
        if group not in GROUPS:
            raise ValueError(f"trainer.group: {group!r} is not one of {list(GROUPS)}")
        if group == "siblings" and self.reward != "sparse":
            raise ValueError(f"trainer.group=siblings scores tree nodes by the verifier's leaf rewards; "
                             f"trainer.reward={self.reward} needs group=problem")
        self.group, self.norm_std = group, norm_std

    def assign_advantages(self, rollouts: list[Rollout]) -> dict[str, float]:
        if self.group == "siblings":
            by_tree = {id(r.result.tree): core_algos.sibling_advantages(r.result.tree, self.norm_std)
                       for r in rollouts}
            for r in rollouts:
                r.advantages = per_node_advantages(r, by_tree[id(r.result.tree)])
            credit_shared_steps_once(rollouts)
            score_mean = None
        else:
            values = trace_scores(self.task, [(r.result.problem, r.trace) for r in rollouts], self.reward, self.orm)
            scores = torch.tensor(values, dtype=torch.float64)
            adv = core_algos.group_advantages(scores, [id(r.result) for r in rollouts], self.norm_std)
            for r, a in zip(rollouts, adv.tolist()):
                r.advantages = [a] * len(r.response_ids)
            score_mean = float(scores.mean())
        informative = sum(any(a != 0.0 for a in r.advantages) for r in rollouts)
        stats = {"informative_rollouts": informative / len(rollouts)}
        return stats if score_mean is None else {**stats, "mean_trace_score": score_mean}
