"""Which sampled tokens could complete a stop string, decided once per stop set.

Decoding every row's text every step costs Python work per row per step, yet a stop can
only be completed by a token whose text contains the stop's last character. A boolean
table over the vocabulary picks those rows out with one tensor lookup; only they are
decoded. A token's text is taken both alone and after an anchor token (decoders such as
SentencePiece's drop a leading space at the start of a text), and any token that decodes
to a partial character (U+FFFD, byte-level vocabularies) is a candidate too, so the
table never misses a stop that decoding the whole text would find.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer

ANCHOR_TEXT = "a"


class StopTable:
    """Candidate tokens for a set of stop strings, and the stop check on a row's tokens."""

    def __init__(self, tokenizer: Tokenizer, stop: list[str], vocab_size: int):
        self.tokenizer = tokenizer
        self.stop = stop
        # Enough tokens to hold the longest stop even at 4 tokens per character (bytes).
        self.window = 4 * max(len(s) for s in stop) + 4
        self.table = self._candidate_table(vocab_size)

    def candidates(self, tokens: torch.Tensor) -> torch.Tensor:
        """Positions in `tokens` whose token could complete a stop."""
        return self.table[tokens.cpu()].nonzero()[:, 0]

    def stopped_text(self, row_tokens: torch.Tensor, length: int) -> str | None:
        """The row's text cut after its first stop, or None if its text holds no stop."""
        recent = row_tokens[max(0, length - self.window) : length].tolist()
        text = self.tokenizer.decode(recent, skip_special_tokens=True)
        if not any(s in text for s in self.stop):
            return None
        text = self.tokenizer.decode(row_tokens[:length].tolist(), skip_special_tokens=True)
        end = min(text.find(s) + len(s) for s in self.stop if s in text)
        return text[:end]

    def _candidate_table(self, vocab_size: int) -> torch.Tensor:
        known = min(vocab_size, self.tokenizer.get_vocab_size(with_added_tokens=True))
        ids = [[i] for i in range(known)]
        anchor = self.tokenizer.encode(ANCHOR_TEXT, add_special_tokens=False).ids[-1:]
        base = self.tokenizer.decode(anchor, skip_special_tokens=True)
        alone = self.tokenizer.decode_batch(ids, skip_special_tokens=True)
        after = self.tokenizer.decode_batch([anchor + i for i in ids], skip_special_tokens=True)
        endings = {s[-1] for s in self.stop} | {"\ufffd"}
        table = torch.ones(vocab_size, dtype=torch.bool)  # ids the tokenizer does not know: always check
        for i, (a, b) in enumerate(zip(alone, after)):
            piece = b[len(base) :] if b.startswith(base) else b
            table[i] = any(c in a or c in piece for c in endings)
        return table
