"""Metrics against brute force and hand-computed values, and one judge per metric family:
answer metrics read the final answer, trace_valid@k every step (on the real Countdown task)."""

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search import SearchResult, SearchTree
from search.expand import majority_vote
from tasks import Problem, Task
from tasks.countdown import Countdown
from search import metrics


@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_brute_force(args):
    n, c, k = args
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 1, 5)


def test_majority_vote_ignores_missing_and_breaks_ties_by_first_seen():
    assert majority_vote([None, "3", "4", "4", "3"]) == "3"
    assert majority_vote([None, "4", "3", "4"]) == "4"
    assert majority_vote([None, None]) is None


class Exact(Task):
    """Answers are the last line; correct when equal to the gold answer."""

    def problems(self, split="train", limit=None, seed=0):
        return []

    def prompt(self, problem):
        return problem.question

    def is_final(self, step):
        return True

    def extract_answer(self, text):
        return text.strip() or None

    def check_answer(self, problem, answer):
        return answer == problem.answer

    def reference_traces(self, problem):
        return [problem.answer]


def result(problem, task, texts):
    tree = SearchTree(problem.id, problem.question)
    for text in texts:
        tree.add_child(0, text, terminal=True, answer=task.extract_answer(text),
                       reward=task.reward(problem, text), tokens=len(text))
    return SearchResult(problem, tree, tokens=tree.tokens, calls=1, wall_time=0.0)


def test_summarize_on_fixed_samples():
    task = Exact()
    p1, p2 = Problem("a", "q", "7"), Problem("b", "q", "1")
    r1 = result(p1, task, ["7", "5", "7", "5", "5"])  # majority 5 (wrong), 2 of 5 correct
    r2 = result(p2, task, ["1", "1 ", "2"])           # majority 1, both correct texts count once
    s = metrics.summarize(task, [r1, r2], k=3)
    # p1 first 3: 7,5,7 -> maj 7 correct; p2: 1,1,2 -> 1 correct
    assert s["maj@k"] == 1.0
    assert s["pass@k"] == pytest.approx(((1 - 1 / 10) + 1.0) / 2)  # p1: 1 - C(3,3)/C(5,3); p2: 1
    assert s["distinct_correct"] == pytest.approx((1 + 1) / 2)
    s5 = metrics.summarize(task, [r1], k=5)
    assert s5["maj@k"] == 0.0  # 5 beats 7 three to two
    assert s5["pass@k"] == 1.0


def test_rerank_picks_highest_scored_trace():
    task = Exact()
    p = Problem("a", "q", "7")
    traces = result(p, task, ["5", "7", "6"]).traces()
    assert metrics.rerank_at_k(task, p, traces, [0.1, 0.9, 0.5], k=3) == 1.0
    assert metrics.rerank_at_k(task, p, traces, [0.9, 0.1, 0.5], k=3) == 0.0
    assert metrics.rerank_at_k(task, p, traces, [0.1, 0.9, 0.5], k=1) == 0.0  # only the first trace is a candidate


COUNTDOWN = Countdown(train_size=4, test_size=4)
PROBLEM = Problem("cd", "Numbers: 4 17 7 2\nTarget: 67", "67", {"numbers": [4, 17, 7, 2], "target": 67})
VALID = "17 - 2 = 15 (left: 4 7 15)\n4 * 15 = 60 (left: 7 60)\n7 + 60 = 67 (left: 67)\nanswer: 7 + 4 * (17 - 2)\n"
ANSWER_ONLY = "answer: 7 + 4 * (17 - 2)\n"                # right answer, no steps reach the target
ILLEGAL_STEP = "17 - 3 = 14 (left: 4 7 2 14)\n" + ANSWER_ONLY  # 3 is not one of the numbers
WRONG = ["answer: 17 + 7\n", "answer: 4 * 17\n", "17 + 7 = 24 (left: 4 2 24)\nanswer: 17 + 7\n", "7 * 2 = 14\n"]


def test_right_answers_through_illegal_steps_score_on_answer_metrics_not_on_trace_validity():
    assert COUNTDOWN.reward(PROBLEM, VALID) == 1.0 and COUNTDOWN.reward(PROBLEM, ILLEGAL_STEP) == 0.0
    s = metrics.summarize(COUNTDOWN, [result(PROBLEM, COUNTDOWN, [ANSWER_ONLY, ILLEGAL_STEP, WRONG[0]])], k=3)
    assert (s["maj@k"], s["pass@k"], s["pass@1"], s["distinct_correct"]) == (1.0, 1.0, pytest.approx(2 / 3), 1.0)
    assert s["trace_valid@k"] == 0.0
    greedy = result(PROBLEM, COUNTDOWN, [ILLEGAL_STEP])
    assert metrics.accuracy(COUNTDOWN, [greedy]) == 1.0  # maj@1 judges the greedy trace's answer
    s = metrics.summarize(COUNTDOWN, [result(PROBLEM, COUNTDOWN, [ILLEGAL_STEP, VALID])], k=2)
    assert s["trace_valid@k"] == 1.0 and s["pass@k"] == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([VALID, ANSWER_ONLY, ILLEGAL_STEP, *WRONG]), min_size=0, max_size=8),
                min_size=1, max_size=4),
       st.integers(1, 8))
def test_maj_at_k_never_exceeds_pass_at_k_on_the_same_samples(sample_sets, k):
    """n <= k traces per problem, as evaluation draws them: the majority answer can only be
    right when some trace's answer is, and a valid trace always has the right answer."""
    results = [result(PROBLEM, COUNTDOWN, texts[:k]) for texts in sample_sets]
    for r in results:
        one = metrics.summarize(COUNTDOWN, [r], k)
        assert one["maj@k"] <= one["pass@k"]
        assert one["trace_valid@k"] <= one["pass@k"]
    s = metrics.summarize(COUNTDOWN, results, k)
    assert s["maj@k"] <= s["pass@k"] + 1e-12
