"""The cached tiny base: `init: pretrained` reads generic arithmetic text only."""

import json
from pathlib import Path

import pytest

from tasks.arith import arithmetic_corpus
from training.base_model import pretraining_examples, tiny_base

TASK = {"_target_": "tasks.countdown.Countdown", "min_numbers": 3, "max_numbers": 3, "number_range": [1, 5],
        "target_range": [2, 10], "train_size": 20, "test_size": 5, "prompt_style": "fewshot", "fewshot_k": 2}
PRETRAIN = {"lines": 48, "operand_range": [1, 12], "lines_per_document": 8}


def test_arithmetic_corpus_is_correct_shuffled_arithmetic_and_seeded():
    lines = arithmetic_corpus(200, (1, 12), seed=3)
    assert len(lines) == 200 and lines == arithmetic_corpus(200, (1, 12), seed=3)
    assert lines != arithmetic_corpus(200, (1, 12), seed=4)
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}
    for line in lines:
        a, op, b, eq, c = line.split()
        assert eq == "=" and line.endswith("\n") and int(c) >= 0 and ops[op](int(a), int(b)) == int(c)
        assert op != "/" or int(a) % int(b) == 0
        assert 1 <= int(b) <= 12
    assert {line.split()[1] for line in lines} == {"+", "-", "*", "/"}
    with pytest.raises(ValueError, match="arithmetic_corpus"):
        arithmetic_corpus(10, (0, 5))


def test_pretraining_documents_hold_no_task_text():
    docs = pretraining_examples(PRETRAIN, seed=0)
    assert len(docs) == 6 and all(prompt == "" for prompt, _ in docs)
    text = "".join(doc for _, doc in docs)
    assert text.count("\n") == 48
    assert "Numbers" not in text and "Target" not in text and "answer" not in text and "left" not in text


def test_pretrained_base_is_built_from_arithmetic_cached_and_distinct_from_sft(tmp_path):
    recipe = dict(task=TASK, size="1m", init="pretrained", pretrain=PRETRAIN, sft={"epochs": 1, "batch_size": 8},
                  seed=0, cache_dir=str(tmp_path), progress=False)
    policy = tiny_base(**recipe)
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("tiny-1m-pretrained-")
    saved = json.loads((folders[0] / "recipe.json").read_text())
    assert saved["init"] == "pretrained" and saved["pretrain"] == PRETRAIN and saved["examples"] == 6
    stamp = (folders[0] / "recipe.json").stat().st_mtime_ns
    again = tiny_base(**recipe)  # loaded from the cache, not rebuilt
    assert (folders[0] / "recipe.json").stat().st_mtime_ns == stamp and len(list(tmp_path.iterdir())) == 1
    for (name, a), b in zip(policy.model.state_dict().items(), again.model.state_dict().values()):
        assert a.equal(b), name
    tiny_base(**{**recipe, "pretrain": {**PRETRAIN, "lines": 40}})  # another recipe, another folder
    assert len(list(tmp_path.iterdir())) == 2


def test_bad_init_and_pretrain_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="policy.init='rl'"):
        tiny_base(TASK, init="rl", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"policy.pretrain: unknown keys \['line'\]"):
        tiny_base(TASK, init="pretrained", pretrain={"line": 5}, cache_dir=str(tmp_path))


def test_code_defaults_are_the_yaml_defaults():
    """`tiny_base` called from code builds the same recipe as `policy=tiny`: every key of
    conf/policy/tiny.yaml that is not interpolated from the run has the code's default."""
    import inspect

    from omegaconf import OmegaConf

    from training.base_model import PRETRAIN_DEFAULTS, SFT_DEFAULTS

    yaml_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "policy" / "tiny.yaml")
    code = {k: p.default for k, p in inspect.signature(tiny_base).parameters.items() if p.default is not p.empty}
    code.update(sft=SFT_DEFAULTS, pretrain=PRETRAIN_DEFAULTS)
    plain = {k: v for k, v in OmegaConf.to_container(yaml_cfg).items()
             if not k.startswith("_") and not (isinstance(v, str) and v.startswith("${")) and k != "engine"}
    assert {k: code[k] for k in plain} == plain
