"""The policy contract every language-model backend implements.

Conventions shared by all backends (HF engine, vLLM, ...):

* `Sample.text` is the generated text, ending right after the stop string when one was
  hit (the stop string is *included*, so `prompt + step` is the next prompt). When a
  token straddles the stop string, the text is cut after the stop and `token_ids` keeps
  the whole token.
* `Sample.logprobs[i]` is log p(token_ids[i]) under the model's *unmodified* distribution
  (temperature 1, no top-p), i.e. what a teacher-forced forward pass gives. Importance
  ratios and rankings therefore never depend on the sampling temperature.
* `finish_reason` is "stop" (a stop string), "eos" (end-of-sequence token) or "length".
* temperature 0 means greedy decoding; `seed` makes a call reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@runtime_checkable
class Policy(Protocol):
    """A language model that samples continuations and scores them: everything search,
    evaluation and the run loop use. Trainers need more: `TrainablePolicy`."""

    tokenizer: Any  # a transformers tokenizer (its chat template serves `prompt_style: chat`)

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
        """`n` samples per prompt, returned as `result[prompt_index][sample_index]`.
        `max_new_tokens_per_prompt` (optional) caps each prompt separately, which is how
        search strategies stay inside a per-problem token budget."""
        ...

    def logprobs(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Teacher-forced log p of each continuation's tokens given its prompt."""
        ...

    def update_weights(self, folder: str | Path | None = None) -> None:
        """Serve the current weights of `model` (after a training step), or first load
        them from an HF checkpoint folder into `model`."""
        ...

    def save(self, path: str | Path) -> None:
        """Write a plain Hugging Face model folder (weights + tokenizer)."""
        ...


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """A policy whose weights a trainer updates in this process (`training.*` types against
    it): the HF causal LM itself, and the exact token ids the sampler used, so that
    rollouts re-encode searched text to the ids that were sampled."""

    model: Any  # a torch.nn.Module (HF causal LM, with `.base_model` for the ORM's backbone)

    def encode_prompt(self, prompt: str) -> list[int]:
        """The ids `sample` feeds for `prompt` (special tokens such as BOS included)."""
        ...

    def encode_continuation(self, text: str) -> list[int]:
        """The ids of `text` written after a prompt (no special tokens)."""
        ...


class TokenizerIds:
    """`encode_prompt` / `encode_continuation` of a backend that feeds a transformers
    `self.tokenizer`'s ids as they are (special tokens on for a prompt, off after it):
    the HF engine and vLLM both tokenize a text prompt this way."""

    tokenizer: Any

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def encode_continuation(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
