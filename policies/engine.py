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
* optionally reuses KV across calls through a `PrefixCache`: a prompt that extends an
  earlier prompt or an earlier sample prefills only its new suffix. The cache is dropped
  whenever the model's weights change (tracked by the parameters' version counters).

It drives any transformers causal LM that accepts `past_key_values` / `position_ids` /
`logits_to_keep` (Llama, Qwen, Mistral, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from policies.base import Sample
from policies.prefix_cache import KV, PrefixCache


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

    def __init__(self, model, tokenizer, prefix_cache: PrefixCache | None = None):
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("Engine needs a fast (tokenizers-backed) tokenizer for incremental decoding")
        self.model = model
        self.tokenizer = tokenizer
        self.prefix_cache = prefix_cache
        self._weights_version: int | None = None
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
            if self.prefix_cache is not None:
                for k, r in enumerate(active):
                    if rows[r].finish_reason is not None and len(rows[r].token_ids) > 1:
                        ids = prompts[r // n] + rows[r].token_ids[:-1]
                        self.prefix_cache.insert(ids, _row_kv(cache, mask, k))
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
        """Run the prompts through the model once, reusing cached prefix KV where known.

        Row i's cached prefix (length m_i) is right-aligned in the first block of columns,
        its uncached suffix right-aligned in the second; padding holes are masked out and
        position ids are explicit. Returns the KV cache, the attention mask, each row's
        next position id and the logits for its first generated token.
        """
        device = self.model.device
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} encodes to no tokens; give the model at least one token")
        if self.prefix_cache is not None:
            self._drop_cache_if_weights_changed()
        hits = [self._lookup(p) for p in prompts]
        cached_width = max(m for m, _ in hits)
        suffix_width = max(len(p) - m for p, (m, _) in zip(prompts, hits))
        ids = torch.full((len(prompts), suffix_width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), cached_width + suffix_width), dtype=torch.long)
        position_ids = torch.zeros((len(prompts), suffix_width), dtype=torch.long)
        for i, (p, (m, _)) in enumerate(zip(prompts, hits)):
            suffix = p[m:]
            ids[i, suffix_width - len(suffix) :] = torch.tensor(suffix)
            position_ids[i, suffix_width - len(suffix) :] = torch.arange(m, len(p))
            mask[i, cached_width - m : cached_width] = 1
            mask[i, cached_width + suffix_width - len(suffix) :] = 1
        ids, mask, position_ids = ids.to(device), mask.to(device), position_ids.to(device)
        cache = DynamicCache(config=self.model.config)
        if cached_width:
            for layer, (k0, _) in enumerate(next(kv for m, kv in hits if m)):
                keys = k0.new_zeros((len(prompts), k0.shape[0], cached_width, k0.shape[2]))
                values = torch.zeros_like(keys)
                for i, (m, kv) in enumerate(hits):
                    if m:
                        keys[i, :, cached_width - m :] = kv[layer][0]
                        values[i, :, cached_width - m :] = kv[layer][1]
                cache.update(keys, values, layer)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self.prefix_cache is not None:
            for i, p in enumerate(prompts):
                self.prefix_cache.insert(p, _row_kv(cache, mask, i))
        positions = torch.tensor([len(p) for p in prompts], device=device)
        return cache, mask, positions, out.logits[:, -1]

    def _lookup(self, ids: list[int]) -> tuple[int, KV]:
        """Cached KV for the longest prefix of `ids`, leaving at least one token to run."""
        if self.prefix_cache is None:
            return 0, []
        return self.prefix_cache.match(ids[:-1])

    def _drop_cache_if_weights_changed(self) -> None:
        """Cached KV is only valid for the weights that computed it; in-place updates
        (optimizer steps, load_state_dict) bump the parameters' version counters."""
        version = sum(p._version for p in self.model.parameters())
        if version != self._weights_version:
            self.prefix_cache.clear()
            self._weights_version = version

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


def _row_kv(cache: DynamicCache, mask: torch.Tensor, row: int) -> KV:
    """Row `row`'s KV over its real (unmasked) columns, per layer: [heads, tokens, dim]."""
    columns = mask[row].nonzero()[:, 0]
    return [(layer.keys[row][:, columns], layer.values[row][:, columns]) for layer in cache.layers]


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    return ids
