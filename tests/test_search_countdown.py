"""Every strategy, built from its Hydra config, on Countdown with a real tiny Llama."""

import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchTree
from search.run import evaluate

CONF = os.path.join(os.path.dirname(__file__), "..", "conf")
SMALL = {"sampling": ["search.n=2", "search.max_new_tokens=24"],
         "tot": ["search.k=2", "search.beam=1", "search.max_depth=2", "search.evaluator=terminal"],
         "tot_dfs": ["search.k=2", "search.max_depth=2", "search.threshold=0.0", "search/evaluator=self_eval",
                     "search.evaluator.votes=1"],
         "mcts": ["search.n_simulations=3", "search.k=2", "search.max_depth=2", "search.evaluator.n=1",
                  "search.evaluator.max_new_tokens=16"],
         "evolution": ["search.population=2", "search.offspring=2", "search.max_depth=2"],
         "best_first": ["search.k=2", "search.max_depth=2", "search.evaluator=terminal"]}


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = build_tiny_model("1m", seed=0)
    return HFPolicy(model, tokenizer)


@pytest.mark.parametrize("name", list(SMALL))
def test_strategy_runs_end_to_end_on_countdown(name, policy):
    with initialize_config_dir(os.path.abspath(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["task=countdown", f"search={name}", "search.max_new_tokens=16",
                                           *SMALL[name]])
    task, strategy = instantiate(cfg.task), instantiate(cfg.search)
    problems = task.problems("test", limit=2, seed=0)
    results = strategy.search(problems, policy, task, Budget(tokens_per_problem=120))
    assert [r.problem.id for r in results] == [p.id for p in problems]
    for r in results:
        assert 0 < r.tokens <= 120 and r.calls >= 1
        assert SearchTree.loads(r.tree.dumps()).dumps() == r.tree.dumps()
    metrics = evaluate(task, results, k=2)
    assert 0.0 <= metrics["pass@2"] <= 1.0 and metrics["tokens_per_problem"] <= 120
