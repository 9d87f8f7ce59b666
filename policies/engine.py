"""A batched KV-cache decode loop built for search workloads.

Search strategies issue many prompts x n samples per call, stop at a step delimiter, and
grow trees whose children extend their parent's text. `model.generate` serves none of
that well, so this loop:

* prefills the prompts in chunks of at most `prefill_tokens` query tokens, so a round of
  hundreds of long prompts never builds one [rows, width, width] mask or one giant batch;
* keeps each prompt's KV once, shared by its n sample rows (`policies.kv`), whenever
  copies would outweigh what the call generates: decoding reads it through
  `shared_prefix_attention` instead of a per-sample copy;
* decodes all rows of the call together (explicit position ids) into a buffer for the
  generated tokens only, sized for what the call can generate and grown on demand;
* keeps live rows in the first slots: when rows finish, live rows from the tail move into
  their slots, so a finish costs a copy of the finished rows only;
* checks stop strings on decoded text, so a delimiter split across tokens is found, but
  only for rows whose newest token could end a stop (a per-stop-set vocabulary table);
* samples on the model's device and records log p(token) under the raw model
  distribution (teacher-forcing equivalent);
* optionally reuses KV across calls through a `PrefixCache`: a prompt that extends an
  earlier prompt or an earlier sample prefills only its new suffix. The cache is dropped
  whenever the model's weights change (tracked by the parameters' version counters).

It drives any full-attention transformers causal LM whose attention layers call
`past_key_values.update(keys, values, layer_idx)`, dispatch to the configured attention
function and accept a prepared 4D boolean mask (Llama, Qwen2, Mistral without sliding
window, ...). The model must sit on its device before the Engine is built.
"""

from __future__ import annotations

import torch

from policies.base import Sample
from policies.decode_rows import DecodeRows
from policies.kv import DecodeCache, PromptKV, SlotCache, sampler_view
from policies.prefix_cache import KV, PrefixCache
from policies.stop_table import StopTable

INITIAL_DECODE_COLUMNS = 64
PREFILL_TOKENS = 4096


class Engine:
    """Batched sampler over a causal LM. `generate` takes token ids, returns Samples."""

    def __init__(
        self,
        model,
        tokenizer,
        prefix_cache: PrefixCache | None = None,
        dtype: torch.dtype | None = None,
        prefill_tokens: int = PREFILL_TOKENS,
    ):
        """`dtype` (e.g. torch.bfloat16) samples with a copy of the weights in that dtype,
        refreshed whenever `model`'s weights change; logprobs are then those of the copy.
        `prefill_tokens` bounds the query tokens (padding included) of one prefill pass."""
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("Engine needs a fast (tokenizers-backed) tokenizer for batched decoding")
        if prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, got {prefill_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.prefix_cache = prefix_cache
        self.prefill_tokens = prefill_tokens
        self.dtype = dtype if dtype not in (None, next(model.parameters()).dtype) else None
        self._sampler = sampler_view(model, self.dtype)
        self._weights_version = self._version()
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
        generator = torch.Generator(device=self.model.device).manual_seed(seed)

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
        self._sync_weights()
        prompt_kv, logits = self._prefill(prompts)
        steps = max(limits)
        shared = shares_prompt_kv(n, prompt_kv.mask.shape[1], steps)
        cache = DecodeCache(self._sampler.config, prompt_kv, [len(p) for p in prompts], n,
                            min(steps, INITIAL_DECODE_COLUMNS), shared)
        rows = DecodeRows(limits, steps, logits.device, torch.tensor(sorted(self.eos_ids), device=logits.device))
        table = self._stop_table(stop) if stop else None
        logits = logits.repeat_interleave(n, dim=0)
        for step in range(steps):
            tokens = _choose(logits, temperature, top_p, generator)
            live = cache.slot_rows[: cache.batch]
            finished = rows.record(live, step, tokens, logits, table)
            done = finished.nonzero()[:, 0].tolist()
            if self.prefix_cache is not None and step > 0:
                for slot in done:
                    self._remember(prompts, n, rows, cache, slot, step)
            if len(done) == cache.batch:
                break
            if done:
                tokens = cache.compact(finished, tokens)
            cache.ensure_room(steps - step)
            logits = self._step(cache, tokens)
        return rows.samples(self.tokenizer.backend_tokenizer)

    def _step(self, cache: DecodeCache, tokens: torch.Tensor) -> torch.Tensor:
        """One decode forward for the live rows; the logits of their next token."""
        cache.begin_step()
        out = self._sampler(
            input_ids=tokens[:, None],
            attention_mask=cache.attention_mask(),
            position_ids=cache.positions[:, None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            decode=cache if cache.shared else None,
        )
        cache.advance()
        return out.logits[:, -1].float()

    def _remember(self, prompts, n: int, rows: DecodeRows, cache: DecodeCache, slot: int, step: int) -> None:
        """Cache a finished row's prompt + generated KV (its last token has none yet)."""
        row = int(cache.slot_rows[slot])
        ids = prompts[row // n] + rows.token_ids[row, :step].tolist()
        self.prefix_cache.insert(ids, lambda start: cache.row_kv(slot, start))

    def _prefill(self, prompts: list[list[int]]) -> tuple[PromptKV, torch.Tensor]:
        """Every prompt's KV (reusing cached prefix KV where known) and the logits of its
        first generated token, computed in chunks of consecutive prompts."""
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} encodes to no tokens; give the model at least one token")
        hits = [self._lookup(p) for p in prompts]
        chunks = _chunks([len(p) - m for p, (m, _) in zip(prompts, hits)], [m for m, _ in hits], self.prefill_tokens)
        width = max(cached + suffix for _, _, cached, suffix in chunks)
        dtype = next(self._sampler.parameters()).dtype
        kv = PromptKV(self._sampler.config, len(prompts), width, dtype, self.model.device)
        logits = torch.cat([self._prefill_chunk(kv, prompts, hits, chunk) for chunk in chunks])
        if self.prefix_cache is not None:
            for i, p in enumerate(prompts):
                self.prefix_cache.insert(p, lambda start, i=i: kv.row_kv(i, start))
        return kv, logits

    def _prefill_chunk(self, kv: PromptKV, prompts, hits, chunk: tuple[int, int, int, int]) -> torch.Tensor:
        """Prompts [a, b) into the last `cached + suffix` columns of `kv`: row i's cached
        prefix (length m_i) right-aligned in the first `cached` columns, its uncached
        suffix right-aligned in the rest; padding holes are masked out and position ids
        are explicit. Returns the logits for each prompt's first generated token."""
        a, b, cached, suffix = chunk
        device, width = self.model.device, cached + suffix
        offset = kv.mask.shape[1] - width
        ids = torch.full((b - a, suffix), self.pad_id, dtype=torch.long)
        position_ids = torch.zeros((b - a, suffix), dtype=torch.long)
        mask = torch.zeros((b - a, width), dtype=torch.bool)
        cache = SlotCache([k[a:b, :, offset:] for k in kv.keys], [v[a:b, :, offset:] for v in kv.values], cached)
        for i, (p, (m, hit)) in enumerate(zip(prompts[a:b], hits[a:b])):
            tail = p[m:]
            ids[i, suffix - len(tail) :] = torch.tensor(tail)
            position_ids[i, suffix - len(tail) :] = torch.arange(m, len(p))
            mask[i, cached - m : cached] = True
            mask[i, width - len(tail) :] = True
            for layer, (k, v) in enumerate(hit):
                cache.keys[layer][i, :, cached - m : cached] = k
                cache.values[layer][i, :, cached - m : cached] = v
        mask = mask.to(device)
        kv.mask[a:b, offset:] = mask
        # Query q (column cached + q) sees valid columns up to itself, and always itself,
        # so padding queries stay finite instead of attending to nothing.
        columns = torch.arange(width, device=device)
        query_columns = columns[cached:, None]
        attend = (mask[:, None, :] & (columns[None, :] <= query_columns)) | (columns[None, :] == query_columns)
        out = self._sampler(
            input_ids=ids.to(device),
            attention_mask=attend[:, None],
            position_ids=position_ids.to(device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float()

    def _lookup(self, ids: list[int]) -> tuple[int, KV]:
        """Cached KV for the longest prefix of `ids`, leaving at least one token to run."""
        if self.prefix_cache is None:
            return 0, []
        return self.prefix_cache.match(ids[:-1])

    def _version(self) -> int:
        return sum(p._version for p in self.model.parameters())

    def _sync_weights(self) -> None:
        """Cached KV and a low-precision copy are only valid for the weights that made
        them; in-place updates (optimizer steps, load_state_dict) bump the parameters'
        version counters, which is how a change is noticed. A same-dtype sampler shares
        the parameters and needs no refresh."""
        if self.prefix_cache is None and self.dtype is None:
            return
        version = self._version()
        if version == self._weights_version:
            return
        self._weights_version = version
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        if self.dtype is not None:
            self._sampler = sampler_view(self.model, self.dtype)

    def _stop_table(self, stop: list[str]) -> StopTable:
        key = tuple(stop)
        if key not in self._stop_tables:
            vocab = max(self.model.config.vocab_size, len(self.tokenizer))
            self._stop_tables[key] = StopTable(self.tokenizer.backend_tokenizer, stop, vocab)
        return self._stop_tables[key]


def shares_prompt_kv(n: int, width: int, steps: int) -> bool:
    """Whether a call's rows read their prompt's KV in place (`DecodeCache` shared).
    Copying puts each prompt's KV into all n of its rows' buffers (n copies, one even at
    n = 1); sharing saves them but costs more kernel calls per step, so it wins once the
    copies are longer than what a row can generate. Counting n - 1 copies instead made a
    tree round's n = 1 calls copy their prompts: ToT at 1,024 problems ran 1.7x slower."""
    return n * width > steps


def _chunks(suffixes: list[int], cached: list[int], budget: int) -> list[tuple[int, int, int, int]]:
    """Consecutive prompts grouped so that rows x widest suffix stays within `budget`
    (a prompt longer than that goes alone): (start, end, cached width, suffix width)."""
    chunks, start = [], 0
    while start < len(suffixes):
        end, widest = start + 1, suffixes[start]
        while end < len(suffixes) and (end + 1 - start) * max(widest, suffixes[end]) <= budget:
            widest = max(widest, suffixes[end])
            end += 1
        chunks.append((start, end, max(cached[start:end]), widest))
        start = end
    return chunks


def _choose(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Greedy at temperature 0, else temperature + nucleus sampling, on the logits' device
    from a local generator (no per-step copy of [rows, vocab] to the CPU)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the top token always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    return ids
