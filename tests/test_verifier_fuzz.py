"""Every verifier of every task is total: any string gets a reward or "invalid" (None) in
bounded time, never an exception. The corpus and the list of entry points are in
`hostile_text.py`; `benchmarks/fuzz_verifiers.py` runs the same over 100k strings."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_text import PIECES, build_tasks, hand_corpus, mutate, run_all
from tasks.arith import Arith
from tasks.base import MAX_STEPS
from tasks.countdown import Countdown

SLOWEST_S = 1.0  # per call, on a shared 2-core machine; 10 MB inputs included


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return build_tasks(tmp_path_factory.mktemp("fuzz_data"), per_task=1)


def assert_total(pairs, texts):
    results = list(run_all(pairs, iter(texts)))
    escapes = [(task, name, text[:80], error) for task, name, text, _, error in results if error is not None]
    assert escapes == []
    slowest = max(results, key=lambda r: r[3])
    assert slowest[3] < SLOWEST_S, (slowest[0], slowest[1], len(slowest[2]), slowest[3])


def test_hand_corpus(pairs):
    assert_total(pairs, hand_corpus())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join) | st.text(max_size=200))
def test_random_strings(pairs, text):
    assert_total(pairs, [text])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_reference_traces(pairs, data):
    task, problems = data.draw(st.sampled_from(pairs))
    trace = task.reference_traces(problems[0])[0]
    pieces = data.draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=4))
    positions = data.draw(st.lists(st.floats(0, 1), min_size=len(pieces), max_size=len(pieces)))
    assert_total(pairs, [mutate(trace, pieces, positions)])


# ---- the cases that escaped before, each failing on the old code ------------------------


@pytest.fixture(scope="module")
def countdown():
    return Countdown(3, 3, (1, 6), (2, 30), train_size=20, test_size=5)


def test_zero_denominators_in_countdown_steps_are_illegal_not_errors(countdown):
    problem = countdown.problems("train")[0]
    for step in ("6/0 + 1 = 7 (left: 7)\n", "1 + 2 = 3 (left: 3 5/0)\n", "1 + 2 = 0/0 (left: 0/0)\n"):
        assert countdown.reward(problem, step + "answer: 1 + 2\n") == 0.0
        assert countdown.step_reward(problem, "", step) == 0.0
        assert countdown.step_reward(problem, step, "answer: 1 + 2\n") == 0.0


def test_an_answer_that_divides_by_zero_is_no_answer(countdown):
    assert countdown.extract_answer("answer: 1/0") is None
    assert countdown.extract_answer("answer: 6 / (4 - 4)\n") is None
    assert countdown.extract_answer("answer: 6 / (4 - 2)\n") == "6 / (4 - 2)"


ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


@pytest.mark.parametrize("task", [Countdown(3, 3, (1, 6), (2, 30), train_size=5, test_size=1),
                                  Arith(train_size=5, test_size=1)], ids=["countdown", "arith"])
def test_unicode_digits_are_not_digits_in_steps(task):
    """As in tasks.answers: only ASCII digits are read, so a step in Arabic-Indic digits is illegal."""
    problem = task.problems("train")[0]
    trace = task.reference_traces(problem)[0]
    assert task.reward(problem, trace) == 1.0
    foreign = trace.translate(ARABIC_INDIC)
    first = task.split_steps(foreign)[0]
    assert task.reward(problem, foreign) == 0.0 and task.step_reward(problem, "", first) == 0.0
    assert task.step_reward(problem, "", "\u0667 - \u0661 = \u0666\n") == 0.0
    if isinstance(task, Arith):
        assert task.extract_answer(f"answer: {problem.answer}".translate(ARABIC_INDIC)) is None


def test_split_steps_is_bounded_on_ten_megabytes_of_newlines(countdown):
    text = "\n" * 10_000_000
    start = time.perf_counter()
    steps = countdown.split_steps(text)
    assert time.perf_counter() - start < 0.5
    assert len(steps) == MAX_STEPS and "".join(steps) == text and steps[0] == "\n"
