"""Countdown: generator, exhaustive solver, trace format and verifiers."""

import pytest

from tasks.countdown import Countdown
from tasks.countdown_solver import reachable, solve
from tasks.expr import evaluate


@pytest.fixture(scope="module")
def task():
    return Countdown(train_size=200, test_size=50, seed=3)


def _problem(task, numbers, target):
    return task.make_problem("hand", numbers, target)


# ---- generator ------------------------------------------------------------------------------

def test_generator_is_deterministic_and_splits_are_disjoint(task):
    again = Countdown(train_size=200, test_size=50, seed=3)
    assert task.problems("train") == again.problems("train")
    assert [p.meta for p in task.problems("test")] == [p.meta for p in again.problems("test")]
    other = Countdown(train_size=200, test_size=50, seed=4)
    assert [p.meta for p in other.problems("train")] != [p.meta for p in task.problems("train")]
    key = lambda p: (tuple(sorted(p.meta["numbers"])), p.meta["target"])  # noqa: E731
    train, test = {key(p) for p in task.problems("train")}, {key(p) for p in task.problems("test")}
    assert len(train) == 200 and len(test) == 50 and not train & test


def test_test_split_does_not_depend_on_train_size(task):
    bigger = Countdown(train_size=300, test_size=50, seed=3)
    assert [p.meta for p in bigger.problems("test")] == [p.meta for p in task.problems("test")]


def test_every_problem_is_solvable_and_in_range(task):
    for p in task.problems("train") + task.problems("test"):
        numbers, target = p.meta["numbers"], p.meta["target"]
        assert 3 <= len(numbers) <= 4 and all(1 <= n <= 20 for n in numbers)
        assert 10 <= target <= 100 and target not in numbers
        assert task.solve(numbers, target)
        assert task.prompt(p) == f"Numbers: {' '.join(map(str, numbers))}\nTarget: {target}\n"


def test_limit_and_seed_pick_a_subset(task):
    full = task.problems("train")
    some = task.problems("train", limit=10, seed=1)
    assert len(some) == 10 and all(p in full for p in some)
    assert some == task.problems("train", limit=10, seed=1)
    assert some != task.problems("train", limit=10, seed=2)


def test_unknown_split_and_bad_config_are_named():
    with pytest.raises(ValueError, match="'validation'"):
        Countdown(train_size=5, test_size=5).problems("validation")
    with pytest.raises(ValueError, match="number_range"):
        Countdown(number_range=(5, 1))
    with pytest.raises(ValueError, match="widen"):
        Countdown(min_numbers=2, max_numbers=2, number_range=(1, 2), train_size=50).problems()


# ---- solver -----------------------------------------------------------------------------------

def test_solver_hand_checked_case():
    # 1 2 3 -> 6 by hand: 3*2, 3*2*1 (= 3*1*2 ...), 3*2/1 (= 3/1*2 ...), 3+2+1; nothing else
    assert solve([1, 2, 3], 6) == ["3 * 2", "3 * 2 * 1", "3 * 2 / 1", "3 + 2 + 1"]
    assert solve([2, 2], 4) == ["2 * 2", "2 + 2"]
    assert solve([5, 7], 1) == []


def test_solver_known_solutions_and_rules():
    assert "6 * (3 + 1)" in solve([3, 6, 4, 1], 24)
    assert solve([5, 5, 5, 1], 24) == ["5 * 5 - 1"]  # no fractions, not all numbers needed
    assert solve([5, 5, 5, 1], 24, allow_fractions=True, use_all=True) == ["5 * (5 - 1 / 5)"]
    for expression in solve([3, 7, 9, 11, 25], 50):
        assert evaluate(expression) == 50
    assert {12, 2, 24, 4, 3} <= reachable([2, 4, 6])


# ---- reference traces and judging ------------------------------------------------------------

def test_reference_traces_earn_full_reward(task):
    for p in task.problems("train", limit=60, seed=0):
        traces = task.reference_traces(p)
        assert 1 <= len(traces) <= task.reference_count
        for trace in traces:
            assert task.reward(p, trace) == 1.0, trace
            assert task.solution_key(p, trace) in task.solve(p.meta["numbers"], p.meta["target"])
            prefix = ""
            for step in task.split_steps(trace):
                assert task.step_reward(p, prefix, step) == 1.0
                prefix += step


def test_trace_format_and_answer_normalisation(task):
    p = _problem(task, [3, 6, 4, 1], 24)
    trace = "6 * 4 = 24 (left: 3 1 24)\nanswer: 6 * 4\n"
    assert task.reward(p, trace) == 1.0
    assert task.is_final("answer: 6 * 4\n") and not task.is_final("6 * 4 = 24 (left: 3 1 24)\n")
    assert task.extract_answer(trace) == task.extract_answer("4 * 6 = 24 (left: 3 1 24)\nanswer:4*6\n") == "6 * 4"
    assert task.check_answer(p, "6*(1+3)") and not task.check_answer(p, "6*4*4")
    assert task.descriptor(p, trace) == (("*",), "n * n")
    assert task.reward(p, trace + "garbage after the answer") == 1.0


@pytest.mark.parametrize(
    "trace",
    [
        "6 * 4 = 25 (left: 3 1 25)\nanswer: 6 * 4\n",  # wrong arithmetic
        "6 * 4 = 24 (left: 3 1 4 24)\nanswer: 6 * 4\n",  # wrong left list
        "6 * 6 = 36 (left: 3 4 1 36)\n36 - 12 = 24 (left: 3 4 1 24)\nanswer: 6 * 4\n",  # reused 6
        "8 * 3 = 24 (left: 6 4 1 24)\nanswer: 8 * 3\n",  # invented 8
        "6 * 4 = 24 (left: 3 1 24)\nanswer: 6 * 3\n",  # wrong final answer
        "6 * 4 = 24 (left: 3 1 24)\nanswer: 6 * 4 * 4\n",  # answer reuses a number
        "6 * 4 = 24 (left: 3 1 24)\nanswer: 27 + -3\n",  # unary minus is not an operation
        "answer: 6 * 4\n",  # no steps reach the target
        "6 * 4 = 24 (left: 3 1 24)\n",  # no final answer
        "1 - 3 = -2 (left: 6 4 -2)\nanswer: 6 * 4\n",  # negative result
        "3 / 6 = 1/2 (left: 4 1 1/2)\n4 * 6 = 24 (left: 1 1/2 24)\nanswer: 4 * 6\n",  # fraction
        "",
    ],
)
def test_bad_traces_get_zero(task, trace):
    assert task.reward(_problem(task, [3, 6, 4, 1], 24), trace) == 0.0


def test_step_reward(task):
    p = _problem(task, [3, 6, 4, 1], 24)
    good = "3 + 1 = 4 (left: 6 4 4)\n"
    assert task.step_reward(p, "", good) == 1.0
    assert task.step_reward(p, task.prompt(p), good) == 1.0  # a leading prompt is dropped
    assert task.step_reward(p, good, "4 * 4 = 16 (left: 6 16)\n") == 1.0  # two 4s now
    assert task.step_reward(p, good, "3 * 6 = 18 (left: 4 4 18)\n") == 0.0  # 3 is used up
    assert task.step_reward(p, good, "answer: 6 * (3 + 1)\n") == 0.0  # target not reached yet
    assert task.step_reward(p, "oops\n", good) == 0.0
    reached = good + "6 * 4 = 24 (left: 4 24)\n"
    assert task.step_reward(p, reached, "answer: 6 * (3 + 1)\n") == 1.0


def test_game24_rules_accept_fraction_steps():
    game = Countdown(allow_fractions=True, use_all=True, train_size=1, test_size=1)
    p = game.make_problem("p", [5, 5, 5, 1], 24)
    trace = "1 / 5 = 1/5 (left: 5 5 1/5)\n5 - 1/5 = 24/5 (left: 5 24/5)\n5 * 24/5 = 24 (left: 24)\nanswer: 5 * (5 - 1 / 5)\n"
    assert game.reward(p, trace) == 1.0
    assert game.reference_traces(p) == [trace]
    assert game.reward(p, "5 * 5 = 25 (left: 5 1 25)\n25 - 1 = 24 (left: 5 24)\nanswer: 5 * 5 - 1\n") == 0.0


@pytest.mark.parametrize(
    "text",
    ["", "\n" * 1000, "x" * 100_000, ("9" * 5000 + " * 2 = 1 (left: 1)\n") * 20,
     "6 * 4 = 24 (left: 3 1 24)\nanswer: " + "(" * 5000 + "6*4" + ")" * 5000 + "\n",
     "answer: 9**9**9\n", "\x00\udcff\n" * 50],
)
def test_hostile_outputs_score_zero(task, text):
    p = _problem(task, [3, 6, 4, 1], 24)
    assert task.reward(p, text) == 0.0
    assert task.step_reward(p, text, text) == 0.0
    task.extract_answer(text)
    task.descriptor(p, text)
