"""The guide's policy-value network: a few-layer MLP over a state space's `encode` vector.

Policy head: one logit per action id, illegal actions masked before the softmax. Value
head: the probability that the state leads to a solved trace (the verifier's 0/1 reward),
so it is a sigmoid. Small enough to train on a CPU core in minutes and to evaluate
thousands of states per second.
"""

from __future__ import annotations

import torch
from torch import nn


class PolicyValueNet(nn.Module):
    def __init__(self, feature_size: int, n_actions: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"search.guide.layers and search.guide.hidden must be >= 1, got {layers}, {hidden}")
        dims = [feature_size] + [hidden] * layers
        self.trunk = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.policy = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, feature_size], mask: [B, n_actions] bool (legal) -> (log-probs [B, A], value [B])."""
        h = self.trunk(x)
        logits = self.policy(h).masked_fill(~mask, -1e9)
        return torch.log_softmax(logits, dim=-1), torch.sigmoid(self.value(h)).squeeze(-1)

    @property
    def flops_per_state(self) -> int:
        """Multiply-adds x 2 of one forward pass (the Linear layers; activations ignored)."""
        return sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))

    @torch.no_grad()
    def predict(self, features: list[list[float]], legal: list[list[int]]) -> tuple[list[list[float]], list[float]]:
        """Priors over each state's legal actions (in the order given) and values, batched."""
        if not features:
            return [], []
        x = torch.tensor(features, dtype=torch.float32)
        mask = torch.zeros(len(features), self.policy.out_features, dtype=torch.bool)
        for row, actions in enumerate(legal):
            mask[row, actions] = True
        logp, value = self(x, mask)
        probs = logp.exp()
        return [probs[row, actions].tolist() for row, actions in enumerate(legal)], value.tolist()
