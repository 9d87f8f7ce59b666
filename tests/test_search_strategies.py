"""Every step-level strategy against the oracle puzzle: optimum found, budgets held,
one batched policy call per round, JSON round trips, determinism."""

import pytest
from puzzle import HEADER, OraclePolicy, OracleValue, PuzzleTask, TinyTextScorer

from search import Budget, SearchTree
from search.best_first import BestFirst
from search.evaluators import RolloutEvaluator, SelfEvaluator, ValueModelEvaluator
from search.evolution import Evolution
from search.mcts import MCTS
from search.sampling import Sampling
from search.tot import TreeOfThoughts
from search.tot_dfs import TreeOfThoughtsDFS

ORACLE = ValueModelEvaluator(OracleValue())


def build(name, **kw):
    common = dict(max_depth=6, max_new_tokens=16, seed=kw.pop("seed", 0))
    return {
        "sampling": lambda: Sampling(n=8, batch=4, max_new_tokens=64, seed=common["seed"], **kw),
        "tot": lambda: TreeOfThoughts(k=8, beam=1, evaluator=ORACLE, answer_by="best_value", **common, **kw),
        "tot_dfs": lambda: TreeOfThoughtsDFS(k=4, evaluator=ORACLE, answer_by="best_value", **common, **kw),
        "mcts": lambda: MCTS(n_simulations=16, k=3, evaluator=ORACLE, **common, **kw),
        "evolution": lambda: Evolution(population=4, offspring=4, max_generations=4, dense_weight=1.0, **common, **kw),
        "best_first": lambda: BestFirst(k=4, evaluator=ORACLE, answer_by="best_value", **common, **kw),
    }[name]()


STRATEGIES = ["sampling", "tot", "tot_dfs", "mcts", "evolution", "best_first"]


def test_tot_bfs_with_oracle_value_finds_the_optimum():
    task = PuzzleTask()
    results = build("tot").search(task.problems(), OraclePolicy(), task, Budget())
    for r in results:
        assert r.answer == r.problem.answer
        assert any(t.reward == 1.0 for t in r.traces())


def test_mcts_visits_concentrate_on_the_best_root_child():
    """The best first step gets most visits; finished paths are not re-visited, so a small
    puzzle's tree is searched out and the search says so instead of spinning."""
    task = PuzzleTask([(3, 24, 3)])  # only *2 *2 *2 reaches 24
    for sims in (8, 64):
        policy = OraclePolicy()
        r = MCTS(n_simulations=sims, k=3, evaluator=ORACLE, max_depth=6, max_new_tokens=16, seed=0).search(
            task.problems(), policy, task, Budget())[0]
        tree = r.tree
        visits = {tree[c]["text"]: 0 for c in tree.children(0)}
        for c in tree.children(0):
            visits[tree[c]["text"]] += tree[c]["visits"]
        assert max(visits, key=visits.get) == "*2\n"
        assert r.calls == len(policy.calls)  # every simulation grew the tree
    assert r.stop_reason == "exhausted" and r.calls < 64
    assert r.answer == "24"


def test_dfs_backtracks_out_of_a_dead_branch():
    task = PuzzleTask([(1, 8, 3)])
    optimistic = ValueModelEvaluator(OracleValue(slack=1))  # a branch looks alive one step longer than it is
    r = TreeOfThoughtsDFS(k=4, evaluator=optimistic, max_depth=6, max_new_tokens=16, seed=0,
                          answer_by="best_value").search(task.problems(), OraclePolicy(), task, Budget())[0]
    assert r.tree.graph.graph["meta"]["log_backtracks"] >= 1
    dead = [n for n in r.tree.graph.nodes if n != 0 and r.tree.children(n)
            and all((r.tree[c]["value"] or 0) < 0.5 for c in r.tree.children(n))]
    assert dead and r.answer == "8"
    solved = [n for n in r.tree.terminals() if r.tree[n]["reward"] == 1.0]
    assert solved and min(solved) > min(dead)  # the solution was found after leaving the dead branch


def test_evolution_best_never_drops_and_mean_rises():
    task = PuzzleTask([(1, 8, 3), (2, 12, 4)])
    results = Evolution(population=6, offspring=6, max_generations=6, dense_weight=1.0, crossover_rate=0.3,
                        max_depth=6, max_new_tokens=16, seed=0).search(task.problems(), OraclePolicy(), task, Budget())
    for r in results:
        log = r.tree.graph.graph["meta"]["log_generations"]
        best = [g["best"] for g in log]
        assert len(log) >= 5 and best == sorted(best)
        assert log[-1]["mean"] > log[0]["mean"]


def test_map_elites_keeps_one_elite_per_descriptor():
    task = PuzzleTask([(1, 8, 3)])
    r = Evolution(population=4, offspring=4, max_generations=3, map_elites=True, max_depth=6, max_new_tokens=16,
                  seed=0).search(task.problems(), OraclePolicy(), task, Budget())[0]
    assert r.tree.graph.graph["meta"]["log_generations"][-1]["size"] >= 2


def test_best_first_pops_in_priority_order():
    task = PuzzleTask()
    results = BestFirst(k=3, evaluator=ValueModelEvaluator(TinyTextScorer(seed=1)), stop_after=3, max_depth=6,
                        max_new_tokens=16, seed=0).search(task.problems(), OraclePolicy(), task, Budget())
    for r in results:
        tree, pops = r.tree, r.tree.graph.graph["meta"]["log_pops"]
        popped = set()
        for node, priority in pops:
            assert node not in popped
            frontier = [n for n in tree.graph.nodes if n not in popped and n != node and not tree[n]["terminal"]
                        and tree[n]["iteration"] < tree[node]["iteration"] + (0 if node == 0 else 1)
                        and (n == 0 or tree.parent(n) in popped)]
            assert all(tree[n]["value"] <= priority + 1e-12 for n in frontier if n != 0)
            popped.add(node)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("budget", [Budget(tokens_per_problem=40), Budget(calls_per_problem=3)])
def test_budget_is_never_exceeded(name, budget):
    task, policy = PuzzleTask(), OraclePolicy()
    results = build(name).search(task.problems(), policy, task, budget)
    spent = policy.tokens_by_problem()
    for r in results:
        assert r.tokens == spent.get(HEADER.search(r.tree.prompt).group(0), 0)
        if budget.tokens_per_problem:
            assert 0 < r.tokens <= budget.tokens_per_problem
        if budget.calls_per_problem:
            assert 0 < r.calls <= budget.calls_per_problem


@pytest.mark.parametrize("name", STRATEGIES)
def test_one_call_per_round_json_round_trip_and_determinism(name):
    task = PuzzleTask()
    dumps = []
    for _ in range(2):
        policy = OraclePolicy()
        results = build(name).search(task.problems(), policy, task, Budget(tokens_per_problem=300))
        rounds = results[0].tree.graph.graph["meta"]["rounds"]
        assert len(policy.calls) == rounds and max(r.calls for r in results) <= rounds < sum(r.calls for r in results)
        assert any(len({HEADER.search(p).group(0) for p in c["prompts"]}) == 3 for c in policy.calls)
        for r in results:
            assert SearchTree.loads(r.tree.dumps()).dumps() == r.tree.dumps()
            assert r.tokens <= 300
        dumps.append([r.tree.dumps() for r in results])
    assert dumps[0] == dumps[1]


def test_policy_evaluators_batch_and_charge_the_budget():
    task = PuzzleTask()
    for evaluator in (RolloutEvaluator(n=2, max_new_tokens=32), SelfEvaluator(votes=2)):
        policy = OraclePolicy()
        results = TreeOfThoughts(k=3, beam=1, evaluator=evaluator, max_depth=6, max_new_tokens=16, seed=0).search(
            task.problems(), policy, task, Budget(tokens_per_problem=400))
        rounds = results[0].tree.graph.graph["meta"]["rounds"]
        assert len(policy.calls) <= 2 * rounds
        spent = policy.tokens_by_problem()
        for r in results:
            assert r.tokens == spent[HEADER.search(r.tree.prompt).group(0)] <= 400
            assert r.tokens > r.tree.tokens  # evaluator tokens are charged too
    # the oracle answers the self-eval question exactly, so self_eval ToT solves the puzzle
    r = TreeOfThoughts(k=8, beam=1, evaluator=SelfEvaluator(votes=1), max_depth=6, max_new_tokens=16, seed=0,
                       answer_by="best_value").search(task.problems()[:1], OraclePolicy(), task, Budget())[0]
    assert r.answer == "24"


def test_value_model_evaluator_with_a_real_tiny_model():
    task = PuzzleTask()
    scorer = TinyTextScorer(seed=0)
    r = TreeOfThoughts(k=3, beam=2, evaluator=ValueModelEvaluator(scorer), max_depth=6, max_new_tokens=16,
                       seed=0).search(task.problems()[:1], OraclePolicy(), task, Budget())[0]
    values = [d["value"] for n, d in r.tree.graph.nodes(data=True) if n != 0]
    assert all(0 < v < 1 for v in values) and len(set(values)) > 1
    with pytest.raises(TypeError, match="value"):
        ValueModelEvaluator(object())
