"""Rollouts as model inputs, and a model pass as per-token tensors and back as per-rollout
lists: what the policy-gradient trainers, their critic and their update feed the model.

Token tensors are (batch, width - 1) in scoring positions: position t scores input token
t + 1, so a rollout's response occupies positions len(prompt) - 1 onwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training import core_algos
from training.rollouts import Rollout
from training.sft import collate, labelled_logprobs


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
            entropy: bool | str = False) -> dict[str, torch.Tensor]:
    """log p of the response tokens, and optionally entropy and values, all (batch, width - 1).
    `entropy="stat"`: entropy without a gradient, for a figure or a token selection (no
    vocabulary-wide tensors kept for the backward pass)."""
    out = model(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"],
                output_hidden_states=head is not None)
    logp, _ = labelled_logprobs(out.logits, batch.inputs["labels"])
    scores = {"logp": logp}
    if entropy:
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy != "stat"):
            scores["entropy"] = core_algos.entropy_from_logits(out.logits[:, :-1])
    if head is not None:
        scores["values"] = head(out.hidden_states[-1][:, :-1])
    return scores


def unpad(t: torch.Tensor, rollouts: list[Rollout]) -> list[list[float]]:
    """Per-rollout response slices of a (batch, width - 1) tensor, as lists."""
    return [t[i, len(r.prompt_ids) - 1 : len(r.prompt_ids) - 1 + len(r.response_ids)].tolist()
            for i, r in enumerate(rollouts)]
