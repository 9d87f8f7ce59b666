"""The engine's KV layouts and the attention that reads them.

Prefill writes each prompt's KV into `PromptKV` once ([prompts, kv_heads, columns, dim],
left-padded, with a validity mask), a chunk of prompts at a time through `SlotCache`
views, so no chunk's mask or activations exceed the engine's token budget.

Decode either keeps that prompt KV *shared* by the prompt's `n` sample rows: `DecodeCache`
then holds only the generated tokens per row ([rows, kv_heads, columns, dim], grown as
needed), and `shared_prefix_attention` attends each row's query to its prompt's KV and to
its own generated KV under one softmax; prompt-side products run on a [prompts, n] grid of
queries, so a prompt's KV is read once for all of its samples. Or, when the copies are
cheap next to what the call generates (short prompts, long samples), it copies the
prompt KV in front of each row's generated columns and attends with plain SDPA, which
costs fewer kernel calls per step on CPU.
"""

from __future__ import annotations

import copy

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from policies.prefix_cache import KV

ATTENTION = "plateau_shared_prefix"


def _kv_shape(config, rows: int, columns: int) -> tuple[int, int, int, int]:
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return rows, heads, columns, dim


class PromptKV:
    """Every prompt's KV, right-aligned in `columns` columns; `mask` marks the valid ones."""

    def __init__(self, config, prompts: int, columns: int, dtype: torch.dtype, device):
        shape = _kv_shape(config, prompts, columns)
        # Zeros, not empty: masked columns get weight 0, and 0 x NaN garbage would be NaN.
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.mask = torch.zeros((prompts, columns), dtype=torch.bool, device=device)

    def row_kv(self, prompt: int, start: int) -> KV:
        """Prompt `prompt`'s KV from its token `start` on, per layer [heads, tokens, dim]."""
        columns = self.mask[prompt].nonzero()[:, 0][start:]
        return [(k[prompt][:, columns], v[prompt][:, columns]) for k, v in zip(self.keys, self.values)]

    def select(self, keep: torch.Tensor) -> None:
        """Keep only prompts `keep`, and drop leading columns none of them uses."""
        first = int(self.mask[keep].any(dim=0).int().argmax())
        self.keys = [k[keep, :, first:] for k in self.keys]
        self.values = [v[keep, :, first:] for v in self.values]
        self.mask = self.mask[keep, first:]


class SlotCache:
    """A transformers Cache over given per-layer buffers [rows, heads, columns, dim]: the
    model writes new tokens at column `length` through `update`; the engine then calls
    `advance`. Prefill chunks use views of a `PromptKV`."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], length: int):
        self.keys, self.values, self.length = keys, values, length

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        end = self.length + keys.shape[2]
        self.keys[layer_idx][:, :, self.length : end] = keys
        self.values[layer_idx][:, :, self.length : end] = values
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def advance(self, tokens: int) -> None:
        self.length += tokens


class DecodeCache:
    """Generated-token KV per row, beside the `PromptKV` (`shared`), or after a copy of
    the row's prompt KV in its first `head` columns (not `shared`).

    Row r samples prompt r // n. Live rows occupy slots [0, batch); `slot_rows` names the
    row in each slot. Every live row has generated exactly `length - head` tokens, so the
    generated columns [head, length) hold no padding.
    """

    def __init__(self, config, prompts: PromptKV, lengths: list[int], n: int, capacity: int, shared: bool):
        self.prompts, self.n, self.shared = prompts, n, shared
        rows = prompts.mask.shape[0] * n
        device, dtype = prompts.mask.device, prompts.keys[0].dtype
        self.head = 0 if shared else prompts.mask.shape[1]
        shape = _kv_shape(config, rows, self.head + capacity)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        if not shared:
            expand = torch.arange(rows, device=device) // n
            for mine, theirs in zip((*self.keys, *self.values), (*prompts.keys, *prompts.values)):
                mine[:, :, : self.head] = theirs[expand]
        self.batch, self.length = rows, self.head
        self.slot_rows = torch.arange(rows, device=device)
        self.prompt_slot = torch.arange(prompts.mask.shape[0], device=device)  # prompt -> its row in `prompts`
        self.prompt_lengths = torch.tensor(lengths, device=device)
        self.begin_step()

    def begin_step(self) -> None:
        """Index the live slots' prompts once per step (every layer's attention uses them)."""
        rows = self.slot_rows[: self.batch]
        self.slot_prompt = self.prompt_slot[rows // self.n]
        self.grid = self.slot_prompt * self.n + rows % self.n  # position in the [prompts, n] query grid
        self.positions = self.prompt_lengths[rows // self.n] + self.length - self.head

    def attention_mask(self) -> torch.Tensor:
        """The 4D mask [batch, 1, 1, columns] of a step: the live slots' prompt columns,
        and (not `shared`) the generated columns, the new token's included."""
        prompt = self.prompts.mask[self.slot_prompt]
        if not self.shared:
            prompt = torch.cat([prompt, prompt.new_ones((self.batch, self.length - self.head + 1))], dim=1)
        return prompt[:, None, None, :]

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        end = self.length + keys.shape[2]
        self.keys[layer_idx][: self.batch, :, self.length : end] = keys
        self.values[layer_idx][: self.batch, :, self.length : end] = values
        return self.keys[layer_idx][: self.batch, :, :end], self.values[layer_idx][: self.batch, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def advance(self) -> None:
        self.length += 1

    def ensure_room(self, steps_left: int) -> None:
        """Before a step: when the generated columns are full, reallocate the live rows with
        room for twice as many (at most what the call can still generate)."""
        capacity = self.keys[0].shape[2]
        if self.length < capacity:
            return

        def grown(old: torch.Tensor) -> torch.Tensor:
            extra = min(steps_left, max(self.length - self.head, 1))
            new = old.new_empty((self.batch, old.shape[1], self.length + extra, old.shape[3]))
            new[:, :, : self.length] = old[: self.batch, :, : self.length]
            return new

        self.keys, self.values = [grown(k) for k in self.keys], [grown(v) for v in self.values]

    def compact(self, finished: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Move live rows from the tail into finished slots (a finish copies only finished
        rows' worth of KV); when `shared`, drop prompts no live row samples once they are
        half the rest."""
        keep = ~finished
        batch = int(keep.sum())
        holes = finished[:batch].nonzero()[:, 0]
        sources = keep[batch:].nonzero()[:, 0] + batch
        if len(holes):
            for layer in (*self.keys, *self.values):
                written = layer[:, :, : self.length]
                written.index_copy_(0, holes, written.index_select(0, sources))
            self.slot_rows[holes] = self.slot_rows[sources]
            tokens = tokens.clone()
            tokens[holes] = tokens[sources]
        self.batch = batch
        live = torch.unique(self.slot_rows[:batch] // self.n)
        if self.shared and 2 * len(live) <= self.prompts.mask.shape[0]:
            self.prompts.select(self.prompt_slot[live])
            self.prompt_slot = torch.full_like(self.prompt_slot, -1)
            self.prompt_slot[live] = torch.arange(len(live), device=live.device)
        return tokens[:batch]

    def row_kv(self, slot: int, start: int) -> KV:
        """The KV of slot `slot`'s prompt and generated tokens, from token `start` on."""
        prompt = int(self.slot_prompt[slot])
        prompt_length = int(self.prompts.mask[prompt].sum())
        first = self.head + max(0, start - prompt_length)
        generated = [(k[slot, :, first : self.length], v[slot, :, first : self.length]) for k, v in zip(self.keys, self.values)]
        if start >= prompt_length:
            return generated
        head = self.prompts.row_kv(prompt, start)
        return [(torch.cat([hk, gk], 1), torch.cat([hv, gv], 1)) for (hk, hv), (gk, gv) in zip(head, generated)]


def _on_grid(rows: torch.Tensor, cache: DecodeCache) -> torch.Tensor:
    """[batch, heads, g, x] rows -> [prompts, heads, n * g, x]: each prompt's samples side by side."""
    batch, heads, g, x = rows.shape
    prompts = cache.prompts.mask.shape[0]
    grid = rows.new_zeros((prompts * cache.n, heads, g, x)).index_copy_(0, cache.grid, rows)
    return grid.view(prompts, cache.n, heads, g, x).transpose(1, 2).reshape(prompts, heads, cache.n * g, x)


def _off_grid(grid: torch.Tensor, cache: DecodeCache, g: int) -> torch.Tensor:
    """The inverse of `_on_grid`, for the live slots only."""
    prompts, heads, _, x = grid.shape
    return grid.view(prompts, heads, cache.n, g, x).transpose(1, 2).reshape(prompts * cache.n, heads, g, x)[cache.grid]


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, decode=None, **kwargs):
    """Attention for the engine's sampler. With `decode` (a DecodeCache), `key`/`value`
    are the rows' generated KV and the prompt KV comes from `decode.prompts`; otherwise
    (prefill, training shapes) this is transformers' SDPA attention."""
    if decode is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    batch, heads, _, dim = query.shape  # one new token per row
    kv_heads = key.shape[1]
    g = heads // kv_heads  # query heads sharing a KV head, adjacent as in repeat_kv
    q = query.reshape(batch, kv_heads, g, dim) * (scaling if scaling is not None else dim**-0.5)
    layer = module.layer_idx
    prompt_keys, prompt_values = decode.prompts.keys[layer], decode.prompts.values[layer]
    prompt_scores = _off_grid(_on_grid(q, decode) @ prompt_keys.transpose(-1, -2), decode, g)
    prompt_scores = prompt_scores.masked_fill(~attention_mask, float("-inf"))
    scores = torch.cat([prompt_scores, q @ key.transpose(-1, -2)], dim=-1)
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    on_prompt, on_generated = weights.split([prompt_keys.shape[2], key.shape[2]], dim=-1)
    out = _off_grid(_on_grid(on_prompt, decode) @ prompt_values, decode, g) + on_generated @ value
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


AttentionInterface.register(ATTENTION, shared_prefix_attention)


def sampler_view(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    """An eval-mode copy of `model` that uses `shared_prefix_attention`. With `dtype` None
    it shares `model`'s parameters (training updates show through at once); otherwise its
    parameters are copies in `dtype`. Buffers (rotary frequencies) keep their precision."""
    def param(p: torch.nn.Parameter) -> torch.nn.Parameter:
        if dtype is None or p.dtype == dtype:
            return p
        return torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)

    view = copy.deepcopy(model, {id(p): param(p) for p in model.parameters()}).eval()
    view.set_attn_implementation(ATTENTION)
    return view
