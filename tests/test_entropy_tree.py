"""search=entropy_tree (TreeRL's EPTree) on a real tiny Llama: forks at the most uncertain
sampled token, one batched call per round, budget held, exact token splits, determinism."""

import copy

import pytest

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchTree
from search.entropy_tree import EntropyTree, can_split
from tasks.countdown import Countdown
from training.rollouts import encode_trace

TASK = dict(min_numbers=2, max_numbers=2, number_range=(1, 4), target_range=(1, 16), train_size=20,
            test_size=2, reference_count=2)


class Counting:
    """The policy, counting its sample calls."""

    def __init__(self, policy):
        self.policy, self.calls = policy, 0
        self.model, self.tokenizer = policy.model, policy.tokenizer

    def sample(self, *args, **kwargs):
        self.calls += 1
        return self.policy.sample(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.policy, name)


@pytest.fixture(scope="module")
def setting():
    model, tokenizer = build_tiny_model("1m", seed=0)
    task = Countdown(**TASK)
    return task, HFPolicy(model, tokenizer), task.problems("train", limit=3, seed=5)


def test_one_fork_goes_to_the_least_likely_sampled_token(setting):
    task, policy, problems = setting
    results = EntropyTree(m=3, forks=1, branch=1, rounds=1, max_new_tokens=24, seed=4).search(
        problems, policy, task, Budget())
    for r in results:
        tree = r.tree
        assert len(tree.terminals()) == 4 and r.calls == 2
        heads = [n for n in tree.graph.nodes if n != tree.root and len(tree.children(n)) == 2]
        assert len(heads) == 1 and tree.parent(heads[0]) == tree.root
        old, new = sorted(tree.children(heads[0]), key=lambda c: tree[c]["iteration"])
        assert tree[new]["iteration"] == 1 and tree[old]["iteration"] == 0
        head = tree[heads[0]]
        chains = [(head["text"] + tree[old]["text"], head["token_ids"] + tree[old]["token_ids"],
                   head["logprobs"] + tree[old]["logprobs"])] + [
            (tree[c]["text"], tree[c]["token_ids"], tree[c]["logprobs"])
            for c in tree.children(tree.root) if c != heads[0]]
        # the untrained model samples special tokens (empty text): no split at or after one
        splittable = [lps[t] for text, ids, lps in chains
                      for t in range(1, len(ids)) if can_split(policy, text, ids, t)]
        assert tree[old]["logprobs"][0] == min(splittable) and len(splittable) >= 3
        assert head["tokens"] + tree[old]["tokens"] == len(chains[0][1])


def test_rounds_batch_problems_hold_the_budget_and_split_exactly(setting):
    task, policy, problems = setting
    dumps = []
    for _ in range(2):
        counting = Counting(policy)
        results = EntropyTree(m=2, forks=2, branch=2, rounds=2, max_new_tokens=24, seed=7).search(
            problems, counting, task, Budget(tokens_per_problem=150))
        assert counting.calls == results[0].tree.graph.graph["meta"]["rounds"] <= 3
        for r in results:
            assert r.tokens == r.tree.tokens <= 150
            assert SearchTree.loads(r.tree.dumps()).dumps() == r.tree.dumps()
            assert all(r.tree.parent(n) < n for n in r.tree.graph.nodes if n)
            for trace in r.traces():
                encode_trace(policy, r, trace)  # raises TokenMismatch if a split broke the ids
        assert any(max(d["depth"] for _, d in r.tree.graph.nodes(data=True)) >= 2 for r in results)
        dumps.append([r.tree.dumps() for r in results])
    assert dumps[0] == dumps[1]
    other = EntropyTree(m=2, forks=2, branch=2, rounds=2, max_new_tokens=24, seed=8).search(
        problems, policy, task, Budget(tokens_per_problem=150))
    assert [r.tree.dumps() for r in other] != dumps[0]


def test_unlimited_budget_grows_m_plus_forks_times_branch_per_round(setting):
    task, policy, problems = setting
    results = EntropyTree(m=2, forks=2, branch=3, rounds=2, max_new_tokens=16, seed=1).search(
        problems, policy, task, Budget())
    grown = [r for r in results if r.stop_reason == "size"]
    assert len(grown) >= 2 and all(len(r.tree.terminals()) == 2 + 2 * 3 * 2 for r in grown)
    for r in results:  # a problem stops early only when no token is left to fork at
        if r.stop_reason != "size":
            assert r.stop_reason == "exhausted" and not any(
                can_split(policy, d["text"], d["token_ids"], t)
                for n, d in r.tree.graph.nodes(data=True) if n for t in range(1, len(d["token_ids"])))
    with pytest.raises(ValueError, match="search.forks"):
        EntropyTree(forks=0)
