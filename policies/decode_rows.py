"""The per-row outputs of one engine call: tokens, log-probs, and why each row stopped.

Rows finish at different steps (EOS, their own token limit, a stop string); the engine
keeps live rows in slots that move, so outputs are kept here by *row*, in [rows, steps]
tensors on the model's device, and turned into `Sample`s once at the end.
"""

from __future__ import annotations

import torch

from policies.base import Sample
from policies.stop_table import StopTable


class DecodeRows:
    """What each row generated, in [rows, steps] tensors on the model's device (Python
    lists are built once, at the end), and why and when it finished."""

    def __init__(self, limits: list[int], steps: int, device, eos: torch.Tensor):
        rows = len(limits)
        self.limits, self.eos = torch.tensor(limits, device=device), eos
        self.token_ids = torch.zeros((rows, steps), dtype=torch.long, device=device)
        self.logprobs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
        self.lengths, self.reasons, self.texts = [0] * rows, [""] * rows, [""] * rows

    def record(self, live: torch.Tensor, step: int, tokens: torch.Tensor, logits: torch.Tensor,
               table: StopTable | None) -> torch.Tensor:
        """Store the live rows' new tokens; close and return (as a slot mask) the rows they
        finish: an EOS, the row's token limit, or a stop string in its text."""
        self.token_ids[live, step] = tokens
        self.logprobs[live, step] = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None])[:, 0]
        eos = torch.isin(tokens, self.eos)
        finished = eos | (self.limits[live] <= step + 1)
        stopped: dict[int, str] = {}
        if table is not None:
            for slot in table.candidates(tokens).tolist():
                text = table.stopped_text(self.token_ids[int(live[slot])], step + 1)
                if text is not None:
                    stopped[slot] = text
                    finished[slot] = True
        slots = finished.nonzero()[:, 0]
        for slot, row, is_eos in zip(slots.tolist(), live[slots].tolist(), eos[slots].tolist()):
            self.lengths[row] = step + 1
            if slot in stopped:
                self.reasons[row], self.texts[row] = "stop", stopped[slot]
            else:
                self.reasons[row] = "eos" if is_eos else "length"
        return finished

    def samples(self, tokenizer) -> list[Sample]:
        """One Sample per row; rows without a stop are decoded in one batch."""
        token_lists, logprob_lists = self.token_ids.tolist(), self.logprobs.tolist()
        rows = range(len(token_lists))
        unstopped = [token_lists[r][: self.lengths[r]] for r in rows if self.reasons[r] != "stop"]
        decoded = iter(tokenizer.decode_batch(unstopped, skip_special_tokens=True))
        return [
            Sample(self.texts[r] if self.reasons[r] == "stop" else next(decoded), token_lists[r][: self.lengths[r]],
                   logprob_lists[r][: self.lengths[r]], self.reasons[r])
            for r in rows
        ]
