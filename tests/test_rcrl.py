"""Return-conditioned RL: the conditioned task, the conditioned data set, and when the
policy starts reading the marker. (The run that raises the reward on easy Countdown is in
test_trainers_e2e.py, beside the other trainers'.)"""

import inspect

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget
from search.sampling import Sampling
from tasks import Problem, Task
from tasks.countdown import Countdown
from training.rcrl import BAD, GOOD, RCRL, ConditionedTask, conditioned_examples

from fixed_results import searched



@pytest.fixture(scope="module")
def countdown():
    return Countdown(min_numbers=3, max_numbers=3, number_range=(1, 5), target_range=(2, 10), train_size=20,
                     test_size=5)


def test_conditioned_task_prepends_good_and_delegates_judging(countdown):
    task = ConditionedTask(countdown)
    problem = countdown.problems("test")[0]
    trace = countdown.reference_traces(problem)[0]
    assert task.prompt(problem) == GOOD + countdown.prompt(problem)
    assert task.reward(problem, trace) == 1.0 and task.reward(problem, "nonsense\n") == 0.0
    assert task.problems("test") == countdown.problems("test")
    assert task.step_stop == countdown.step_stop and task.name == countdown.name
    first = countdown.split_steps(trace)[0]
    # the prefix a search hands over starts with the conditioned prompt; the marker is stripped
    assert task.step_reward(problem, task.prompt(problem), first) == 1.0
    assert task.step_reward(problem, task.prompt(problem), "9 * 9 = 81 (left: 81)\n") == 0.0
    assert task.solutions(problem) == countdown.solutions(problem)  # optional capabilities pass through
    assert task.descriptor(problem, trace) == countdown.descriptor(problem, trace)
    assert task.state_space().spec() == countdown.state_space().spec()


def test_every_public_task_method_and_attribute_is_delegated():
    """A recording task answers every public method of `Task` with a value only it gives;
    the wrapper must hand each call through, so a method added to `Task` and forgotten in
    `ConditionedTask` (which would silently run `Task`'s default) fails here."""
    methods = [n for n, _ in inspect.getmembers(Task, inspect.isfunction) if not n.startswith("_")]
    attributes = [n for n, v in vars(Task).items() if not n.startswith("_") and not callable(v)]
    calls = []

    def recorder(name):
        def method(self, *args, **kwargs):
            calls.append(name)
            return f"from the task: {name}"
        return method

    inner = type("Recorder", (Task,), {**{n: recorder(n) for n in methods},
                                       **{n: f"own {n}" for n in attributes}})()
    wrapped = ConditionedTask(inner, marker="")
    problem = Problem("p", "q", "a")
    for name in methods:
        params = list(inspect.signature(getattr(Task, name)).parameters)[1:]
        args = [problem if p == "problem" else "" for p in params]
        result = getattr(wrapped, name)(*args)
        assert calls[-1:] == [name], f"ConditionedTask.{name} is not delegated"
        if inspect.signature(getattr(Task, name)).return_annotation != "None":
            assert result == f"from the task: {name}", f"ConditionedTask.{name} does not return the task's answer"
        calls.clear()
    assert {n: getattr(wrapped, n) for n in attributes} == {n: f"own {n}" for n in attributes}


def test_every_trace_is_kept_with_its_return_marker_and_deduplicated(countdown):
    problem = countdown.problems("train")[0]
    conditioned = GOOD + countdown.prompt(problem)
    results = [searched(problem, conditioned, [("right\n", 1.0), ("wrong\n", 0.0), (" right \n", 1.0), ("half\n", 0.5)])]
    data = conditioned_examples(results, countdown, iteration=2, strategy="sampling")
    assert [(d["prompt"], d["completion"]) for d in data] == [
        (GOOD + countdown.prompt(problem), "right\n"), (BAD + countdown.prompt(problem), "wrong\n"),
        (BAD + countdown.prompt(problem), "half\n")]
    assert all(d["iteration"] == 2 and d["strategy"] == "sampling" for d in data)
    lenient = conditioned_examples(results, countdown, iteration=2, good_threshold=0.5)
    assert [(d["prompt"].startswith(GOOD), d["completion"]) for d in lenient] == [
        (True, "right\n"), (True, "half\n"), (False, "wrong\n")]


def test_bad_per_good_keeps_the_first_bad_traces_of_each_problem(countdown):
    one, two = countdown.problems("train")[:2]
    results = [searched(one, countdown.prompt(one), [("r1\n", 1.0), ("w1\n", 0.0), ("r2\n", 1.0), ("w2\n", 0.0),
                                                     ("w3\n", 0.0)]),
               searched(two, countdown.prompt(two), [("w4\n", 0.0), ("w5\n", 0.0)])]  # no GOOD: no BAD kept
    kept = lambda ratio: [d["completion"] for d in conditioned_examples(results, countdown, 1, bad_per_good=ratio)]
    assert kept(0.5) == ["r1\n", "r2\n", "w1\n"]
    assert kept(1.0) == ["r1\n", "r2\n", "w1\n", "w2\n"]
    assert kept(0.0) == ["r1\n", "r2\n"]
    assert kept(None) == ["r1\n", "r2\n", "w1\n", "w2\n", "w3\n", "w4\n", "w5\n"]
    with pytest.raises(ValueError, match="trainer.bad_per_good"):
        RCRL(bad_per_good=-1)


def test_rcrl_step_trains_on_good_and_bad_and_resumes_its_state(countdown):
    """The policy is asked with plain prompts until it has trained on marked traces (it has
    never seen a marker before), with GOOD after, and a resumed trainer asks the same way."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer)
    trainer = RCRL(sft={"epochs": 2, "batch_size": 4, "lr": 1e-3}, reset_each_round=False, seed=0)
    task = trainer.setup(policy, countdown)
    assert isinstance(task, ConditionedTask)
    problems = countdown.problems("train", limit=3, seed=0)
    results = Sampling(n=2, temperature=1.0, max_new_tokens=24, seed=0).search(problems, policy, task, Budget())
    assert all(t.prompt == countdown.prompt(r.problem) for r in results for t in r.traces())
    good = [(countdown.reference_traces(p)[0], 1.0) for p in problems]  # make sure both markers occur
    results += [searched(p, task.prompt(p), [g]) for p, g in zip(problems, good)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = trainer.step(1, results)
    assert 0.0 < stats["good_fraction"] < 1.0 and stats["dataset_size"] == stats["new_examples"] >= 4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    state = trainer.state_dict()
    assert task.prompt(problems[0]) == GOOD + countdown.prompt(problems[0])
    again = RCRL(sft={"epochs": 2, "batch_size": 4, "lr": 1e-3}, reset_each_round=False, seed=0)
    resumed_task = again.setup(policy, countdown)
    assert resumed_task.prompt(problems[0]) == countdown.prompt(problems[0])
    again.load_state_dict(state)
    assert again.dataset == trainer.dataset and again.optimizer is not None
    assert resumed_task.prompt(problems[0]) == GOOD + countdown.prompt(problems[0])
