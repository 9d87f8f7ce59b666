"""The in-process Hugging Face policy: trains and samples the same `torch.nn.Module`.

Prompts are tokenized the way the tokenizer itself does with special tokens on (our
character tokenizer prepends <bos> by itself). That is also what vLLM does with a text
prompt, so both backends see the same ids for the same prompt. Continuations are
tokenized on their own, without special tokens, and appended -- exactly the ids the
sampler produced when it generated them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from policies.base import Sample, TokenizerIds
from policies.engine import PREFILL_TOKENS, Engine
from policies.prefix_cache import PrefixCache

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Teacher-forced scoring is chunked so that batch x length x vocab logits stay bounded.
LOGPROB_CHUNK_ELEMENTS = 64 * 1024 * 1024


def load_checkpoint_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Copy the weights of an HF checkpoint folder into `model` in place."""
    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=next(model.parameters()).dtype)
    try:
        model.load_state_dict(loaded.state_dict())
    except RuntimeError as err:
        raise ValueError(f"checkpoint {folder} does not fit the model: {err}") from None


class HFPolicy(TokenizerIds):
    """`Policy` over a transformers causal LM, sampling with our batched `Engine`."""

    def __init__(
        self,
        model,
        tokenizer,
        prefix_cache_tokens: int = 0,
        sample_dtype: str | None = None,
        prefix_cache_mb: float | None = None,
        prefill_tokens: int = PREFILL_TOKENS,
    ):
        """`prefix_cache_tokens` > 0 keeps up to that many tokens of KV across calls, and
        at most `prefix_cache_mb` MiB of it (None: tokens only), so prompts extending
        earlier prompts or samples prefill only their new suffix. `prefill_tokens` bounds
        one prefill pass (prompts are prefilled in chunks of that many query tokens).
        `sample_dtype` ("bfloat16") samples with a copy of the weights in that dtype (2-3x
        faster GEMMs on CPUs with AVX-512 bf16); `Sample.logprobs` are then the copy's,
        within ~1e-2 per token of the fp32 teacher-forced `logprobs` (see tests)."""
        if sample_dtype is not None and sample_dtype not in DTYPES:
            raise ValueError(f"sample_dtype must be one of {sorted(DTYPES)} or None, got {sample_dtype!r}")
        if prefix_cache_mb is not None and prefix_cache_mb <= 0:
            raise ValueError(f"prefix_cache_mb must be > 0 or null, got {prefix_cache_mb}")
        self.model = model
        self.tokenizer = tokenizer
        max_bytes = int(prefix_cache_mb * 2**20) if prefix_cache_mb is not None else None
        cache = PrefixCache(prefix_cache_tokens, max_bytes) if prefix_cache_tokens > 0 else None
        dtype = DTYPES[sample_dtype] if sample_dtype is not None else None
        self.engine = Engine(model, tokenizer, prefix_cache=cache, dtype=dtype, prefill_tokens=prefill_tokens)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: str = "float32",
        device: str = "cpu",
        prefix_cache_tokens: int = 0,
        sample_dtype: str | None = None,
        prefix_cache_mb: float | None = None,
        prefill_tokens: int = PREFILL_TOKENS,
    ) -> "HFPolicy":
        """Load any transformers causal-LM folder (weights + tokenizer); the engine
        options are those of `HFPolicy`."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if not Path(path).is_dir() and Path(path).expanduser().is_absolute():
            raise FileNotFoundError(f"model folder {path} does not exist")  # relative names may be hub ids
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device).eval()
        return cls(model, tokenizer, prefix_cache_tokens, sample_dtype, prefix_cache_mb, prefill_tokens)

    def save(self, path: str | Path) -> None:
        """Write a plain Hugging Face model folder (weights + tokenizer)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def update_weights(self, folder: str | Path | None = None) -> None:
        """Make sampling use new weights. In-place changes to `model` need nothing: the
        engine notices them (parameter version counters) and drops stale cached KV. A
        checkpoint folder is loaded into the same `model` object, so a trainer's
        optimizer keeps pointing at it."""
        if folder is not None:
            load_checkpoint_weights(self.model, folder)

    def sample(
        self,
        prompts: list[str],
        n: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        max_new_tokens_per_prompt: list[int] | None = None,
    ) -> list[list[Sample]]:
        """`n` samples per prompt (see `policies.base` for the conventions)."""
        if max_new_tokens_per_prompt is None:
            limits = [max_new_tokens] * len(prompts)
        elif len(max_new_tokens_per_prompt) != len(prompts):
            raise ValueError(
                f"max_new_tokens_per_prompt has {len(max_new_tokens_per_prompt)} entries for {len(prompts)} prompts"
            )
        else:
            limits = [min(max_new_tokens, m) for m in max_new_tokens_per_prompt]
        was_training = self.model.training
        self.model.eval()
        try:
            return self.engine.generate(
                [self.encode_prompt(p) for p in prompts], n, limits, temperature, top_p, stop, seed
            )
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def logprobs(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Teacher-forced log p of each continuation token given its prompt."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = [(self.encode_prompt(p), self.encode_continuation(c)) for p, c in zip(prompts, continuations)]
        was_training = self.model.training
        self.model.eval()
        try:
            return self.sequence_logprobs(pairs)
        finally:
            self.model.train(was_training)

    def sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """log p of each continuation id given its prompt ids, in length-sorted chunks."""
        results: list[list[float]] = [[] for _ in pairs]
        order = sorted((i for i, (_, c) in enumerate(pairs) if c), key=lambda i: -sum(map(len, pairs[i])))
        vocab = self.model.config.vocab_size
        start = 0
        while start < len(order):
            width = sum(map(len, pairs[order[start]]))
            size = max(1, LOGPROB_CHUNK_ELEMENTS // (width * vocab))
            chunk = order[start : start + size]
            for i, values in zip(chunk, self._score_chunk([pairs[i] for i in chunk], width)):
                results[i] = values
            start += size
        return results

    def _score_chunk(self, pairs: list[tuple[list[int], list[int]]], width: int) -> list[list[float]]:
        device = self.model.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (p, c) in enumerate(pairs):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            mask[i, : len(p) + len(c)] = 1
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logp = logp.gather(2, ids[:, 1:, None].to(device))[:, :, 0].cpu()
        return [token_logp[i, len(p) - 1 : len(p) + len(c) - 1].tolist() for i, (p, c) in enumerate(pairs)]
