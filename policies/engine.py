"""A batched KV-cache decode loop built for search workloads.

Search strategies issue many prompts x n samples per call, stop at a step delimiter, and
grow trees whose children extend their parent's text. `model.generate` serves none of
that well, so this loop:

* prefills each distinct prompt once and copies its KV to the n sample rows;
* decodes all rows of the call together (left padding, explicit position ids) into a
  preallocated KV buffer (`SlotCache`): no concatenation per step;
* keeps live rows in the first slots of the buffer: when rows finish, live rows from the
  tail move into their slots, so a finish costs a copy of the finished rows only, never
  of the whole batch; padding columns no live row needs are skipped by an offset;
* checks stop strings on decoded text, so a delimiter split across tokens is found, but
  only for rows whose newest token could end a stop (a per-stop-set vocabulary table);
* records log p(token) under the raw model distribution (teacher-forcing equivalent);
* optionally reuses KV across calls through a `PrefixCache`: a prompt that extends an
  earlier prompt or an earlier sample prefills only its new suffix. The cache is dropped
  whenever the model's weights change (tracked by the parameters' version counters).

It drives any full-attention transformers causal LM whose attention layers call
`past_key_values.update(keys, values, layer_idx)` and accept a prepared 4D boolean mask
(Llama, Qwen2, Mistral without sliding window, ...).
"""

from __future__ import annotations

import copy

import torch

from policies.base import Sample
from policies.prefix_cache import KV, PrefixCache
from policies.stop_table import StopTable

INITIAL_DECODE_COLUMNS = 64


class SlotCache:
    """Preallocated per-layer KV, [rows, kv_heads, capacity, head_dim].

    Live rows occupy slots [0, batch); columns [start, length) hold every live row's keys.
    The model writes the new tokens' KV through `update` (the transformers Cache call),
    the engine then calls `advance`.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], length: int):
        self.keys, self.values = keys, values
        self.batch = keys[0].shape[0]
        self.start, self.length = 0, length

    @classmethod
    def allocate(cls, config, rows: int, capacity: int, dtype: torch.dtype, device) -> "SlotCache":
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (rows, heads, capacity, dim)
        layers = range(config.num_hidden_layers)
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in layers],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in layers],
            0,
        )

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        end = self.length + keys.shape[2]
        self.keys[layer_idx][: self.batch, :, self.length : end] = keys
        self.values[layer_idx][: self.batch, :, self.length : end] = values
        return (
            self.keys[layer_idx][: self.batch, :, self.start : end],
            self.values[layer_idx][: self.batch, :, self.start : end],
        )

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def grow(self, mask: torch.Tensor, extra: int) -> torch.Tensor:
        """Reallocate the live rows' columns [start, length) with `extra` free columns
        after them; returns the mask re-based the same way."""
        used = self.length - self.start

        def moved(old: torch.Tensor) -> torch.Tensor:
            new = old.new_zeros((self.batch, old.shape[1], used + extra, *old.shape[3:]))
            new[:, :, :used] = old[: self.batch, :, self.start : self.length]
            return new

        self.keys, self.values = [moved(k) for k in self.keys], [moved(v) for v in self.values]
        new_mask = mask.new_zeros((self.batch, used + extra))
        new_mask[:, :used] = mask[: self.batch, self.start : self.length]
        self.start, self.length = 0, used
        return new_mask

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length - self.start

    def advance(self, tokens: int) -> None:
        self.length += tokens

    def move(self, to: torch.Tensor, source: torch.Tensor) -> None:
        """Copy rows `source` into slots `to` (the written columns only)."""
        for layer in (*self.keys, *self.values):
            written = layer[:, :, self.start : self.length]
            written.index_copy_(0, to, written.index_select(0, source))

    def row_kv(self, slot: int, columns: torch.Tensor) -> KV:
        """One row's KV over the given columns, per layer: [heads, tokens, dim]."""
        return [(k[slot][:, columns], v[slot][:, columns]) for k, v in zip(self.keys, self.values)]


class Engine:
    """Batched sampler over a causal LM. `generate` takes token ids, returns Samples."""

    def __init__(
        self, model, tokenizer, prefix_cache: PrefixCache | None = None, dtype: torch.dtype | None = None
    ):
        """`dtype` (e.g. torch.bfloat16) samples with a copy of the weights in that dtype,
        refreshed whenever `model`'s weights change; logprobs are then those of the copy."""
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("Engine needs a fast (tokenizers-backed) tokenizer for batched decoding")
        self.model = model
        self.tokenizer = tokenizer
        self.prefix_cache = prefix_cache
        self.dtype = dtype
        self._sampler = model
        self._weights_version: int | None = None
        self._stop_tables: dict[tuple[str, ...], StopTable] = {}
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

        results: list[list[Sample]] = [[Sample("", [], [], "length") for _ in range(n)] for _ in prompt_ids]
        live = [i for i in range(len(prompt_ids)) if max_new_tokens[i] > 0]
        if live:
            prompts = [prompt_ids[i] for i in live]
            limits = [max_new_tokens[i] for i in live for _ in range(n)]
            samples = self._decode(prompts, n, limits, temperature, top_p, stop, generator)
            for j, sample in enumerate(samples):
                results[live[j // n]][j % n] = sample
        return results

    def _decode(self, prompts, n, limits, temperature, top_p, stop, generator) -> list[Sample]:
        """Decode rows prompt-major (row r samples prompt r // n); one Sample per row."""
        device = self.model.device
        self._sync_weights()
        prefill, prefill_mask, positions, logits = self._prefill(prompts)
        rows, steps, width = len(limits), max(limits), prefill.length
        # Room for a typical step; long generations grow it (most rows stop early).
        capacity = width + min(steps, INITIAL_DECODE_COLUMNS)
        cache = SlotCache.allocate(self.model.config, rows, capacity, prefill.keys[0].dtype, device)
        expand = torch.arange(rows, device=device) // n
        for big, small in zip((*cache.keys, *cache.values), (*prefill.keys, *prefill.values)):
            big[:, :, :width] = small[expand]
        cache.length = width
        mask = torch.zeros((rows, capacity), dtype=torch.bool, device=device)
        mask[:, :width] = prefill_mask[expand]
        positions, logits = positions[expand], logits[expand]
        del prefill

        slot_rows = torch.arange(rows, device=device)  # the row living in each slot
        row_limits = torch.tensor(limits, device=device)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        token_ids = torch.zeros((rows, steps), dtype=torch.long, device=device)
        logprobs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
        lengths, reasons, texts = [0] * rows, [""] * rows, [""] * rows
        table = self._stop_table(stop) if stop else None
        for step in range(steps):
            live_rows = slot_rows[: cache.batch]
            tokens = _choose(logits, temperature, top_p, generator)
            token_ids[live_rows, step] = tokens
            logprobs[live_rows, step] = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None])[:, 0]
            finished = torch.isin(tokens, eos) | (row_limits[live_rows] <= step + 1)
            stopped: dict[int, str] = {}
            if table is not None:
                for slot in table.candidates(tokens).tolist():
                    text = table.stopped_text(token_ids[int(live_rows[slot])], step + 1)
                    if text is not None:
                        stopped[slot] = text
                        finished[slot] = True
            done = finished.nonzero()[:, 0].tolist()
            for slot in done:
                row = int(live_rows[slot])
                lengths[row] = step + 1
                if slot in stopped:
                    reasons[row], texts[row] = "stop", stopped[slot]
                else:
                    reasons[row] = "eos" if int(tokens[slot]) in self.eos_ids else "length"
                if self.prefix_cache is not None and step > 0:
                    ids = prompts[row // n] + token_ids[row, :step].tolist()
                    self.prefix_cache.insert(ids, cache.row_kv(slot, mask[slot, : cache.length].nonzero()[:, 0]))
            if len(done) == cache.batch:
                break
            if done:
                tokens, positions = self._compact(cache, finished, mask, slot_rows, tokens, positions)
            if cache.length == cache.capacity:
                mask = cache.grow(mask, min(steps - step, max(cache.length - cache.start, INITIAL_DECODE_COLUMNS)))
            mask[: cache.batch, cache.length] = True
            out = self._sampler(
                input_ids=tokens[:, None],
                attention_mask=mask[: cache.batch, None, None, cache.start : cache.length + 1],
                position_ids=positions[:, None],
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache.advance(1)
            logits = out.logits[:, -1].float()
            positions = positions + 1

        token_lists, logprob_lists = token_ids.tolist(), logprobs.tolist()
        samples = []
        unstopped = [token_lists[r][: lengths[r]] for r in range(rows) if reasons[r] != "stop"]
        decoded = iter(self.tokenizer.backend_tokenizer.decode_batch(unstopped, skip_special_tokens=True))
        for r in range(rows):
            text = texts[r] if reasons[r] == "stop" else next(decoded)
            samples.append(Sample(text, token_lists[r][: lengths[r]], logprob_lists[r][: lengths[r]], reasons[r]))
        return samples

    @staticmethod
    def _compact(cache: SlotCache, finished, mask, slot_rows, tokens, positions):
        """Move live rows from the tail into finished slots; skip all-padding columns."""
        keep = ~finished
        batch = int(keep.sum())
        holes = finished[:batch].nonzero()[:, 0]
        sources = keep[batch:].nonzero()[:, 0] + batch
        if len(holes):
            cache.move(holes, sources)
            mask[holes] = mask[sources]
            slot_rows[holes] = slot_rows[sources]
            tokens, positions = tokens.clone(), positions.clone()
            tokens[holes], positions[holes] = tokens[sources], positions[sources]
        cache.batch = batch
        used = mask[:batch, cache.start : cache.length].any(dim=0)
        cache.start += int(used.int().argmax())
        return tokens[:batch], positions[:batch]

    def _prefill(self, prompts: list[list[int]]):
        """Run the prompts through the model once, reusing cached prefix KV where known.

        Row i's cached prefix (length m_i) is right-aligned in the first block of columns,
        its uncached suffix right-aligned in the second; padding holes are masked out and
        position ids are explicit. Returns the KV, the attention mask over its columns,
        each row's next position id and the logits for its first generated token.
        """
        device = self.model.device
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} encodes to no tokens; give the model at least one token")
        hits = [self._lookup(p) for p in prompts]
        cached_width = max(m for m, _ in hits)
        suffix_width = max(len(p) - m for p, (m, _) in zip(prompts, hits))
        width = cached_width + suffix_width
        ids = torch.full((len(prompts), suffix_width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.bool)
        position_ids = torch.zeros((len(prompts), suffix_width), dtype=torch.long)
        for i, (p, (m, _)) in enumerate(zip(prompts, hits)):
            suffix = p[m:]
            ids[i, suffix_width - len(suffix) :] = torch.tensor(suffix)
            position_ids[i, suffix_width - len(suffix) :] = torch.arange(m, len(p))
            mask[i, cached_width - m : cached_width] = True
            mask[i, width - len(suffix) :] = True
        ids, mask, position_ids = ids.to(device), mask.to(device), position_ids.to(device)
        dtype = next(self._sampler.parameters()).dtype
        cache = SlotCache.allocate(self.model.config, len(prompts), width, dtype, device)
        for i, (m, kv) in enumerate(hits):
            for layer, (k, v) in enumerate(kv):
                cache.keys[layer][i, :, cached_width - m : cached_width] = k
                cache.values[layer][i, :, cached_width - m : cached_width] = v
        cache.length = cached_width
        # Query q (column cached_width + q) sees valid columns up to itself, and always
        # itself, so padding queries stay finite instead of attending to nothing.
        columns = torch.arange(width, device=device)
        query_columns = columns[cached_width:, None]
        causal = columns[None, :] <= query_columns
        attend = (mask[:, None, :] & causal) | (columns[None, :] == query_columns)
        out = self._sampler(
            input_ids=ids,
            attention_mask=attend[:, None],
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.advance(suffix_width)
        if self.prefix_cache is not None:
            for i, p in enumerate(prompts):
                self.prefix_cache.insert(p, cache.row_kv(i, mask[i].nonzero()[:, 0]))
        positions = torch.tensor([len(p) for p in prompts], device=device)
        return cache, mask, positions, out.logits[:, -1].float()

    def _lookup(self, ids: list[int]) -> tuple[int, KV]:
        """Cached KV for the longest prefix of `ids`, leaving at least one token to run."""
        if self.prefix_cache is None:
            return 0, []
        return self.prefix_cache.match(ids[:-1])

    def _sync_weights(self) -> None:
        """Cached KV and a low-precision copy are only valid for the weights that made
        them; in-place updates (optimizer steps, load_state_dict) bump the parameters'
        version counters, which is how a change is noticed."""
        if self.prefix_cache is None and self.dtype in (None, next(self.model.parameters()).dtype):
            return
        version = sum(p._version for p in self.model.parameters())
        if version == self._weights_version:
            return
        self._weights_version = version
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        if self.dtype not in (None, next(self.model.parameters()).dtype):
            self._sampler = _cast_copy(self.model, self.dtype)

    def _stop_table(self, stop: list[str]) -> StopTable:
        key = tuple(stop)
        if key not in self._stop_tables:
            vocab = max(self.model.config.vocab_size, len(self.tokenizer))
            self._stop_tables[key] = StopTable(self.tokenizer.backend_tokenizer, stop, vocab)
        return self._stop_tables[key]


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


def _cast_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """An eval-mode copy of `model` with parameters in `dtype`; buffers (rotary
    frequencies) keep their precision."""
    memo = {id(p): torch.nn.Parameter(p.detach().to(dtype), requires_grad=False) for p in model.parameters()}
    return copy.deepcopy(model, memo).eval()


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    return ids
