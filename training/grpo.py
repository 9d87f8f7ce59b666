"""GRPO (Shao et al. 2024): no critic; each trace's advantage is its outcome reward
relative to the other samples of the same problem (`group: problem`), or each tree step's
value relative to its siblings' (`group: siblings`, values = mean leaf reward below a
node; each shared step credited once). Options researchers compare: std normalisation
on/off (Dr. GRPO turns it off), the KL penalty in the loss (coefficient, estimator) or
none, the clip range, epochs and minibatches — all handled by `training.pg`.
"""

from __future__ import annotations

import torch

from training import core_algos
from training.pg import PolicyGradientTrainer, Rollout, credit_shared_steps_once, per_node_advantages

GROUPS = ("problem", "siblings")


class GRPO(PolicyGradientTrainer):
    name = "grpo"

    def __init__(self, *, group: str = "problem", norm_std: bool = True, kl_coef: float = 0.04,
                 kl_estimator: str = "k3", **kwargs):
        super().__init__(kl_coef=kl_coef, kl_estimator=kl_estimator, **kwargs)
        if group not in GROUPS:
            raise ValueError(f"trainer.group: {group!r} is not one of {list(GROUPS)}")
        self.group, self.norm_std = group, norm_std

    def assign_advantages(self, rollouts: list[Rollout]) -> dict[str, float]:
        if self.group == "siblings":
            by_tree = {id(r.result.tree): core_algos.sibling_advantages(r.result.tree, self.norm_std)
                       for r in rollouts}
            for r in rollouts:
                r.advantages = per_node_advantages(r, by_tree[id(r.result.tree)])
            credit_shared_steps_once(rollouts)
        else:
            scores = torch.tensor([r.trace.reward for r in rollouts], dtype=torch.float64)
            groups = [id(r.result) for r in rollouts]
            adv = core_algos.group_advantages(scores, groups, self.norm_std)
            for r, a in zip(rollouts, adv.tolist()):
                r.advantages = [a] * len(r.response_ids)
        informative = sum(any(a != 0.0 for a in r.advantages) for r in rollouts)
        return {"informative_rollouts": informative / len(rollouts)}
