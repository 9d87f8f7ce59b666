"""Best-of-N sampling against the oracle puzzle policy."""

from puzzle import HEADER, OraclePolicy, PuzzleTask

from search import Budget, SearchTree
from search.sampling import Sampling


def test_sampling_batches_problems_votes_and_counts_tokens():
    task, policy = PuzzleTask(), OraclePolicy()
    problems = task.problems()
    results = Sampling(n=6, batch=4, max_new_tokens=64, seed=1).search(problems, policy, task, Budget())
    assert len(policy.calls) == 2  # rounds of 4 then 2 samples, every problem in each call
    assert all(len(call["prompts"]) == len(problems) for call in policy.calls)
    assert [c["n"] for c in policy.calls] == [4, 2]
    spent = policy.tokens_by_problem()
    for r in results:
        root_children = r.tree.children(0)
        assert len(root_children) == 6 and all(r.tree[c]["terminal"] for c in root_children)
        assert r.tokens == r.tree.tokens == spent[HEADER.search(r.tree.prompt).group(0)]
        assert r.calls == 2
        answers = [r.tree[c]["answer"] for c in root_children]
        assert r.answer is not None and answers.count(r.answer) == max(answers.count(a) for a in answers)
        assert all(t.reward == float(t.answer == r.problem.answer) for t in r.traces())


def test_sampling_stops_at_token_budget_and_is_deterministic():
    task = PuzzleTask()
    budget = Budget(tokens_per_problem=50)
    runs = []
    for _ in range(2):
        policy = OraclePolicy()
        results = Sampling(n=32, batch=8, max_new_tokens=64, seed=3).search(task.problems(), policy, task, budget)
        assert all(r.tokens <= 50 for r in results)
        assert all(v <= 50 for v in policy.tokens_by_problem().values())
        runs.append([r.tree.dumps() for r in results])
    assert runs[0] == runs[1]
    tree = SearchTree.loads(runs[0][0])
    assert tree.dumps() == runs[0][0]


def test_sampling_honours_call_budget():
    task, policy = PuzzleTask(), OraclePolicy()
    results = Sampling(n=10, batch=2, seed=0).search(task.problems(), policy, task, Budget(calls_per_problem=3))
    assert len(policy.calls) == 3 and all(r.calls == 3 and len(r.tree.children(0)) == 6 for r in results)
