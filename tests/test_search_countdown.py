"""Every strategy on Countdown with a real tiny Llama, by config alone: built from its Hydra
config and run directly, through `search.run`, and as the expert of `training.run trainer=ei`."""

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchTree
from search.metrics import summarize
from training.evaluate import evaluate_search
from tasks.config import build_task
from training.loop import run

from composing import composed
from small_search import SMALL_SEARCH

# A tiny base built in seconds from a small Countdown: enough to exercise every code path.
RUN = ["task.train_size=20", "task.test_size=4", "policy.sft_problems=8", "policy.sft.epochs=1",
       "train_problems=3", "eval.problems=2", "eval.k=2", "eval.max_new_tokens=40", "progress=false",
       "save_trees=1", "budget.tokens_per_problem=120", "trainer.sft.epochs=1", "trainer.sft.batch_size=4"]


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = build_tiny_model("1m", seed=0)
    return HFPolicy(model, tokenizer)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bases"))


@pytest.mark.parametrize("name", list(SMALL_SEARCH))
def test_strategy_runs_end_to_end_on_countdown(name, policy):
    cfg = composed(f"search={name}", "search.max_new_tokens=16", *SMALL_SEARCH[name])
    task, strategy = build_task(cfg.task), instantiate(cfg.search)
    problems = task.problems("test", limit=2, seed=0)
    results = strategy.search(problems, policy, task, Budget(tokens_per_problem=120))
    assert [r.problem.id for r in results] == [p.id for p in problems]
    for r in results:
        assert 0 < r.tokens <= 120 and r.calls >= 1
        assert SearchTree.loads(r.tree.dumps()).dumps() == r.tree.dumps()
    metrics = summarize(task, results, k=2)
    assert 0.0 <= metrics["pass@k"] <= 1.0 and metrics["tokens"] <= 120


@pytest.mark.parametrize("name", list(SMALL_SEARCH))
def test_search_run_evaluates_every_strategy(name, tmp_path, cache):
    cfg = composed(f"search={name}", "search.max_new_tokens=16", *SMALL_SEARCH[name], *RUN, f"++policy.cache_dir={cache}")
    metrics = evaluate_search(cfg, tmp_path)
    assert metrics["problems"] == 2 and metrics["tokens"] <= 120
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    trees = list((tmp_path / "trees" / "iter_000").glob("*.json"))
    assert len(trees) == 1 and SearchTree.loads(trees[0].read_text()).graph.number_of_nodes() > 1


@pytest.mark.parametrize("name", list(SMALL_SEARCH))
def test_every_strategy_is_the_expert_of_expert_iteration(name, tmp_path, cache):
    cfg = composed(f"search={name}", "trainer=ei", "iterations=1", "search.max_new_tokens=16", *SMALL_SEARCH[name], *RUN,
                   f"++policy.cache_dir={cache}")
    rows = run(cfg, tmp_path)
    assert [(r["iteration"], r["kind"]) for r in rows] == [(0, "eval"), (1, "train"), (1, "eval")]
    assert 0 < rows[1]["search_tokens"] <= 3 * 120
    traces = [json.loads(line) for line in (tmp_path / "traces" / "iter_001.jsonl").read_text().splitlines()]
    assert traces and {t["strategy"] for t in traces} == {instantiate(cfg.search).name}
    assert (Path(tmp_path) / "checkpoints" / "iter_001" / "COMPLETE").exists()
