"""A batched KV-cache decode loop built for search workloads.

Search strategies issue many prompts x n samples per call, stop at a step delimiter, and
grow trees whose children extend their parent's text. `model.generate` serves none of
that well, so this loop:

* prefills each distinct prompt once and expands its KV to the n sample rows;
* decodes all rows of the call together (left padding, explicit position ids);
* checks stop strings on decoded text, so a delimiter split across tokens is found;
* drops finished rows from the batch (and the KV cache), and trims padding columns that
  no remaining row needs, so no compute is spent on finished work;
* records log p(token) under the raw model distribution (teacher-forcing equivalent);

It drives any transformers causal LM that accepts `past_key_values` / `position_ids` /
`logits_to_keep` (Llama, Qwen, Mistral, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from policies.base import Sample


@dataclass
class _Row:
    """One sample being decoded."""

    prompt_index: int
    limit: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""  # decoded incrementally, only when stop strings are checked
    prefix_offset: int = 0
    read_offset: int = 0
    finish_reason: str | None = None


class Engine:
    """Batched sampler over a causal LM. `generate` takes token ids, returns Samples."""

    def __init__(self, model, tokenizer):
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("Engine needs a fast (tokenizers-backed) tokenizer for incremental decoding")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        max_new_tokens: list[int],
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[list[Sample]]:
        """`n` samples for each prompt; `max_new_tokens[i]` caps prompt i."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        stop = [s for s in (stop or []) if s]
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # follows the global torch seed
        generator = torch.Generator().manual_seed(seed)

        live = [i for i, ids in enumerate(prompt_ids) if max_new_tokens[i] > 0]
        rows = [_Row(prompt_index=i, limit=max_new_tokens[i]) for i in live for _ in range(n)]
        if rows:
            self._decode(
                [prompt_ids[i] for i in live], n, rows, temperature, top_p, stop, generator
            )
        results: list[list[Sample]] = [
            [Sample("", [], [], "length") for _ in range(n)] for _ in prompt_ids
        ]
        for j, row in enumerate(rows):
            results[row.prompt_index][j % n] = self._to_sample(row)
        return results

    def _decode(self, prompts, n, rows, temperature, top_p, stop, generator) -> None:
        device = self.model.device
        cache, mask, positions, logits = self._prefill(prompts)
        if n > 1:
            cache.batch_repeat_interleave(n)
            mask = mask.repeat_interleave(n, dim=0)
            positions = positions.repeat_interleave(n, dim=0)
            logits = logits.repeat_interleave(n, dim=0)
        active = list(range(len(rows)))
        max_stop = max((len(s) for s in stop), default=0)
        while True:
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            tokens = _choose(logits.float(), temperature, top_p, generator)
            chosen = logprobs.gather(1, tokens[:, None])[:, 0].tolist()
            token_list = tokens.tolist()
            for k, r in enumerate(active):
                rows[r].token_ids.append(token_list[k])
                rows[r].logprobs.append(chosen[k])
            if stop:
                self._extend_text([rows[r] for r in active], stop, max_stop)
            for r in active:
                row = rows[r]
                if row.finish_reason is None:
                    if row.token_ids[-1] in self.eos_ids:
                        row.finish_reason = "eos"
                    elif len(row.token_ids) >= row.limit:
                        row.finish_reason = "length"
            keep = [k for k, r in enumerate(active) if rows[r].finish_reason is None]
            if not keep:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, positions, tokens = mask[index], positions[index], tokens[index]
                active = [active[k] for k in keep]
                mask = _trim_padding(cache, mask)
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=positions[:, None],
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1]
            positions = positions + 1

    def _prefill(self, prompts: list[list[int]]):
        """Run the prompts (left-padded) through the model once.

        Returns the KV cache, the attention mask, each row's next position id and the
        logits for its first generated token.
        """
        device = self.model.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} encodes to no tokens; give the model at least one token")
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        positions = torch.tensor([len(p) for p in prompts], device=device)
        return cache, mask, positions, out.logits[:, -1]

    def _extend_text(self, rows: list[_Row], stop: list[str], max_stop: int) -> None:
        """Decode each row's newest tokens and mark rows whose text now contains a stop.

        Decoding a short window (vLLM-style prefix/read offsets) keeps multi-token
        characters intact without re-decoding the whole sequence every step.
        """
        decode = self.tokenizer.backend_tokenizer.decode_batch
        before = decode([r.token_ids[r.prefix_offset : r.read_offset] for r in rows], skip_special_tokens=True)
        after = decode([r.token_ids[r.prefix_offset :] for r in rows], skip_special_tokens=True)
        for row, old, new in zip(rows, before, after):
            if len(new) <= len(old) or new.endswith("\ufffd"):
                continue  # an incomplete character: wait for more tokens
            start = max(0, len(row.text) - max_stop + 1)
            row.text += new[len(old) :]
            row.prefix_offset, row.read_offset = row.read_offset, len(row.token_ids)
            hits = [(row.text.find(s, start), s) for s in stop]
            hits = [(pos, s) for pos, s in hits if pos >= 0]
            if hits:
                pos, s = min(hits)
                row.text = row.text[: pos + len(s)]
                row.finish_reason = "stop"

    def _to_sample(self, row: _Row) -> Sample:
        text = row.text
        if row.finish_reason != "stop":
            text = self.tokenizer.backend_tokenizer.decode(row.token_ids, skip_special_tokens=True)
        return Sample(text, row.token_ids, row.logprobs, row.finish_reason or "length")


def _choose(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Greedy at temperature 0, else temperature + nucleus sampling from a local generator."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the top token always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_probs)
    return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(logits.device)


def _trim_padding(cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding for every remaining row."""
    first = int(mask.any(dim=0).int().argmax().item())
    if first == 0:
        return mask
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, first:]
        layer.values = layer.values[:, :, first:]
    return mask[:, first:]


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    return ids
