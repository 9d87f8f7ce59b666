"""The outcome reward model on real tiny models: it learns the verifier's labels, reranks,
scores search nodes through ValueModelEvaluator, and gives dense step rewards."""

import random

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget
from search.evaluators import ValueModelEvaluator
from search.metrics import rerank_at_k, summarize
from search.sampling import Sampling
from search.tot import TreeOfThoughts
from tasks.countdown import Countdown
from training.orm import ORMTraining, build_orm, labelled_traces, train_orm
from training.rewards import step_scores

from fixed_results import searched

TRAIN = {"epochs": 4, "batch_size": 16, "lr": 2e-3}


@pytest.fixture(scope="module")
def task():
    return Countdown(min_numbers=3, max_numbers=3, number_range=(1, 5), target_range=(2, 12), train_size=40,
                     test_size=12, reference_count=2)


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = build_tiny_model("1m", seed=0)
    return HFPolicy(model, tokenizer)


def judged(task, problem, traces):
    """A depth-1 tree of whole traces, each judged by the task's verifier."""
    return searched(problem, task.prompt(problem), [(t, task.reward(problem, t)) for t in traces], strategy="fixed",
                        answer=task.extract_answer)


def candidates(task, problem):
    """Two correct traces (the solver's) and two wrong ones: a reference cut before its
    answer line, and one whose answer line comes first (so its steps come after it)."""
    right = (task.reference_traces(problem) * 2)[:2]
    steps = task.split_steps(right[0])
    return right, ["".join(steps[:-1]), "".join(steps[-1:] + steps[:-1])]


def result_sets(task, problems, seed):
    rng = random.Random(seed)
    out = []
    for p in problems:
        right, wrong = candidates(task, p)
        texts = right + wrong
        rng.shuffle(texts)
        out.append(judged(task, p, texts))
    return out


@pytest.fixture(scope="module")
def trained(task, policy):
    """An ORM on a copy of the policy's backbone, trained on labelled train-split traces."""
    torch.manual_seed(0)
    orm = build_orm(policy, backbone="policy")
    traces = [t for r in result_sets(task, task.problems("train"), seed=0) for t in r.traces()]
    stats = train_orm(orm, traces, TRAIN, seed=0)
    return orm, stats


def test_labels_are_the_verifiers_and_duplicates_are_dropped(task):
    problem = task.problems("train")[0]
    result = judged(task, problem, task.reference_traces(problem)[:1] * 2 + ["junk\n"])
    pairs = labelled_traces(result.traces())
    assert [y for _, y in pairs] == [1.0, 0.0]
    assert pairs[0][0] == task.prompt(problem) + task.reference_traces(problem)[0]


def test_untrained_orm_is_neutral_and_its_backbone_is_a_copy(policy):
    orm = build_orm(policy, backbone="policy")
    assert orm.value(["Numbers: 1 2 3\nTarget: 6\n", "x"]) == [0.5, 0.5]
    assert orm.backbone is not policy.model.base_model
    with torch.no_grad():
        next(orm.backbone.parameters()).add_(1.0)
    assert not torch.equal(next(orm.backbone.parameters()), next(policy.model.base_model.parameters()))
    with pytest.raises(ValueError, match="orm.backbone"):
        build_orm(policy, backbone="gpt")


@pytest.mark.slow  # trains the shared ORM fixture: ~40 optimizer steps of a 1M model
def test_orm_ranks_correct_traces_above_wrong_ones_on_held_out_problems(task, trained):
    orm, stats = trained
    assert 0.3 < stats["orm_positive"] < 0.7 and stats["orm_accuracy"] > 0.9
    held_out = result_sets(task, task.problems("test"), seed=1)
    traces = [t for r in held_out for t in r.traces()]
    scores = orm.score_traces(traces)
    right = [s for s, t in zip(scores, traces) if t.reward == 1.0]
    wrong = [s for s, t in zip(scores, traces) if t.reward == 0.0]
    pairs_ordered = sum(r > w for r in right for w in wrong) / (len(right) * len(wrong))
    assert pairs_ordered > 0.8, pairs_ordered  # AUC on unseen problems


@pytest.mark.slow  # trains the shared ORM fixture: ~40 optimizer steps of a 1M model
def test_rerank_at_k_beats_the_first_sample_on_fixed_samples(task, trained):
    orm, _ = trained
    held_out = result_sets(task, task.problems("test"), seed=2)
    metrics = summarize(task, held_out, k=4, scorer=orm.score_traces)
    first = sum(r.traces()[0].reward for r in held_out) / len(held_out)
    assert metrics["rerank@k"] >= first and metrics["rerank@k"] > 0.75, (metrics["rerank@k"], first)
    ranked = [rerank_at_k(task, r.problem, r.traces(), orm.score_traces(r.traces()), 4) for r in held_out]
    assert sum(ranked) / len(ranked) == metrics["rerank@k"]


@pytest.mark.slow  # trains the shared ORM fixture: ~40 optimizer steps of a 1M model
def test_orm_is_a_value_model_for_tree_search(task, policy, trained):
    orm, _ = trained
    strategy = TreeOfThoughts(k=2, beam=1, max_depth=2, max_new_tokens=20, evaluator=ValueModelEvaluator(orm), seed=0)
    problems = task.problems("test", limit=2, seed=0)
    results = strategy.search(problems, policy, task, Budget())
    scored = [(r, n) for r in results for n in r.tree.graph.nodes if n != 0 and r.tree[n]["value"] is not None]
    assert scored
    for r, n in scored:
        expected = orm.value([task.prompt(r.problem) + r.tree.prefix(n)])[0]
        assert r.tree[n]["value"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow  # trains the shared ORM fixture: ~40 optimizer steps of a 1M model
def test_step_rewards_are_the_orms_value_after_each_prefix(task, trained):
    orm, _ = trained
    problem = task.problems("test")[0]
    prompt, steps = task.prompt(problem), task.split_steps(task.reference_traces(problem)[0])
    traces = judged(task, problem, ["".join(steps), "junk"]).traces()
    rewards, junk = step_scores(task, [(problem, t) for t in traces], "orm", orm)  # one batched ORM call
    assert len(rewards) == len(steps) and len(junk) == len(task.split_steps("junk"))
    assert rewards == pytest.approx(orm.value([prompt + "".join(steps[: i + 1]) for i in range(len(steps))]), abs=1e-6)
    assert rewards[-1] > rewards[-2]  # the finished trace looks better than the one cut before its answer


def test_orm_training_accumulates_rounds_and_round_trips_its_state(task, policy):
    make = lambda: ORMTraining(policy, backbone="tiny", train={"epochs": 1, "batch_size": 8}, seed=0)  # noqa: E731
    run = make()
    problems = task.problems("train", limit=6, seed=0)
    first = Sampling(n=2, temperature=1.0, max_new_tokens=24, seed=0).search(problems, policy, task, Budget())
    stats = run.fit(1, first + result_sets(task, problems, seed=0))
    size = len(run.dataset)
    assert 0 < stats["orm_positive"] < 1 and size > 12
    run.fit(2, result_sets(task, problems, seed=0))  # the same traces again add nothing
    assert len(run.dataset) == size
    copy = make()
    copy.load_state_dict(run.state_dict())
    texts = [x for x, _ in run.dataset[:5]]
    assert copy.model.value(texts) == run.model.value(texts) and copy.dataset == run.dataset
