"""Return-conditioned RL: the conditioned task, the conditioned data set, and a real
training run that raises the policy's reward on easy Countdown."""

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchResult, SearchTree
from search.sampling import Sampling
from tasks import Problem
from tasks.countdown import Countdown
from training.rcrl import BAD, GOOD, RCRL, ConditionedTask, conditioned_examples

from easy_countdown import easy_policy, easy_task, mean_reward


def searched(problem, prompt, completions):
    tree = SearchTree(problem.id, prompt, strategy="sampling")
    for text, reward in completions:
        tree.add_child(0, text, terminal=True, reward=reward, answer=text.strip())
    return SearchResult(problem, tree, tokens=0, calls=1, wall_time=0.0)


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
    assert task.solve(problem.meta["numbers"], problem.meta["target"])  # task extras pass through


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
    assert [d["prompt"].startswith(GOOD) for d in lenient] == [True, False, True]


def test_rcrl_step_trains_on_good_and_bad_and_resumes_its_state(countdown):
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer)
    trainer = RCRL(sft={"epochs": 2, "batch_size": 4, "lr": 1e-3}, reset_each_round=False, seed=0)
    task = trainer.setup(policy, countdown)
    assert isinstance(task, ConditionedTask)
    problems = countdown.problems("train", limit=3, seed=0)
    results = Sampling(n=2, temperature=1.0, max_new_tokens=24, seed=0).search(problems, policy, task, Budget())
    assert all(t.prompt.startswith(GOOD) for r in results for t in r.traces())
    good = [(countdown.reference_traces(p)[0], 1.0) for p in problems]  # make sure both markers occur
    results += [searched(p, task.prompt(p), [g]) for p, g in zip(problems, good)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = trainer.step(1, results)
    assert 0.0 < stats["good_fraction"] < 1.0 and stats["dataset_size"] == stats["new_examples"] >= 4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    state = trainer.state_dict()
    again = RCRL(sft={"epochs": 2, "batch_size": 4, "lr": 1e-3}, reset_each_round=False, seed=0)
    again.setup(policy, countdown)
    again.load_state_dict(state)
    assert again.dataset == trainer.dataset and again.optimizer is not None


@pytest.mark.slow
def test_rcrl_learns_what_its_return_marker_means_on_easy_countdown():
    """A briefly SFT'd tiny model, three RCRL rounds of best-of-8 sampling on 48 problems:
    afterwards, prompts marked GOOD must give clearly more correct traces than prompts
    marked BAD. (On this setting RCRL does not raise the GOOD-conditioned reward above the
    base's within a few rounds: most traces are wrong, and fitting them drags the policy
    toward its own mistakes faster than the marker separates them. See issue notes.)"""
    torch.manual_seed(0)
    base_task = easy_task()
    policy = easy_policy()
    trainer = RCRL(sft={"epochs": 3, "batch_size": 16, "lr": 1e-3}, reset_each_round=False, seed=0)
    task = trainer.setup(policy, base_task)
    problems = base_task.problems("train", limit=48, seed=1)
    for iteration in range(1, 4):
        results = Sampling(n=8, temperature=1.0, max_new_tokens=72, seed=100 + iteration).search(
            problems, policy, task, Budget())
        trainer.step(iteration, results)
        policy.update_weights()
    good, bad = (mean_reward(Sampling(n=8, temperature=1.0, max_new_tokens=72, seed=200).search(
        problems, policy, ConditionedTask(base_task, marker), Budget())) for marker in (GOOD, BAD))
    assert good >= bad + 0.03, (good, bad)
