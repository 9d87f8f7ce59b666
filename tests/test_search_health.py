"""Health figures: spend, stop reasons, parse rate and the evaluator's value AUC."""

from puzzle import OraclePolicy, OracleValue, PuzzleTask

from search import Budget
from search.evaluators import SelfEvaluator, TerminalEvaluator, ValueModelEvaluator
from search.health import roc_auc, search_health, value_auc
from search.mcts import MCTS
from search.sampling import Sampling
from search.tot import TreeOfThoughts

TASK = PuzzleTask([(1, 8, 3), (2, 12, 4), (3, 24, 3), (1, 10, 4)])


def test_roc_auc_by_hand():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5  # ties count half
    assert roc_auc([0.7, 0.3, 0.6], [True, False, False]) == 1.0
    assert roc_auc([0.7, 0.3], [True, True]) is None


def test_search_health_counts_spend_and_stop_reasons():
    results = Sampling(n=None, batch=2, max_new_tokens=64, seed=0).search(
        TASK.problems(), OraclePolicy(), TASK, Budget(tokens_per_problem=100))
    h = search_health(results, Budget(tokens_per_problem=100))
    assert h["spent_fraction_min"] == 1.0 and h["stop_budget"] == 4 and h["stop_size"] == 0
    assert h["eval_parse_rate"] is None
    h = search_health(Sampling(n=2, seed=0).search(TASK.problems(), OraclePolicy(), TASK, Budget()), Budget())
    assert h["spent_fraction_mean"] is None and h["stop_size"] == 4


def test_self_eval_parse_rate_is_recorded():
    results = TreeOfThoughts(k=3, beam=1, evaluator=SelfEvaluator(votes=2), max_depth=6, max_new_tokens=16,
                             seed=0).search(TASK.problems(), OraclePolicy(), TASK, Budget())
    assert search_health(results, Budget())["eval_parse_rate"] == 1.0  # the oracle always answers sure/impossible


def test_value_auc_separates_an_informed_evaluator_from_a_blind_one():
    def auc(evaluator):
        results = MCTS(n_simulations=12, k=3, evaluator=evaluator, max_depth=6, max_new_tokens=16, seed=0).search(
            TASK.problems(), OraclePolicy(), TASK, Budget())
        return value_auc(results, OraclePolicy(), TASK, nodes=64, rollouts=8, max_new_tokens=64, seed=0)

    informed, blind = auc(ValueModelEvaluator(OracleValue())), auc(TerminalEvaluator())
    assert informed["value_auc"] > 0.8 and informed["value_auc_nodes"] > 10 and informed["value_auc_tokens"] > 0
    assert blind["value_auc"] == 0.5  # every open node scores the neutral 0.5
