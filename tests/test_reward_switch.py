"""One `trainer.reward` key (sparse | dense | orm) on every trainer, and the run's outcome
reward model wired into `training.run` by config alone: trainer.reward=orm,
search/evaluator=value_model and eval.rerank=orm, trained on the run's own traces,
checkpointed and resumed with the run. Real Hydra composition, real tiny runs."""

import json
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from tasks.config import build_task
from tasks.rewards import step_rewards
from training.loop import run

from composing import composed

TINY = ["task.min_numbers=3", "task.max_numbers=3", "task.number_range=[1,5]", "task.target_range=[2,12]",
        "task.train_size=40", "task.test_size=4", "policy.sft_problems=16", "policy.sft.epochs=20",
        "policy.progress=false", "iterations=1", "train_problems=3", "eval.problems=2", "eval.k=2",
        "eval.max_new_tokens=24", "save_trees=0", "progress=false", "search.max_new_tokens=16",
        "orm.train.epochs=1", "orm.train.batch_size=8"]
TRAINER = {"ei": ["trainer.sft.epochs=1"], "rcrl": ["trainer.sft.epochs=1"], "ppo": ["trainer.minibatch_size=4"],
           "grpo": ["trainer.minibatch_size=4"]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bases"))


@pytest.mark.parametrize("trainer", sorted(TRAINER))
def test_every_trainer_takes_the_one_reward_key(trainer):
    for reward in ("sparse", "dense", "orm"):
        assert instantiate(composed(f"trainer={trainer}", f"trainer.reward={reward}").trainer).reward == reward
    with pytest.raises(InstantiationException, match=r"trainer.reward: 'shaped' is not one of \['sparse', 'dense', 'orm'\]"):
        instantiate(composed(f"trainer={trainer}", "trainer.reward=shaped").trainer)


def test_tree_rewards_refuse_a_reward_they_would_ignore():
    with pytest.raises(InstantiationException, match="trainer.group=siblings uses the verifier.s 0/1 rewards; trainer.reward=dense needs the plain group advantage"):
        instantiate(composed("trainer=grpo", "trainer.group=siblings", "trainer.reward=dense").trainer)
    with pytest.raises(InstantiationException, match="trainer.advantage=tree .* trainer.reward=orm needs advantage=gae"):
        instantiate(composed("trainer=ppo", "trainer.advantage=tree", "trainer.reward=orm").trainer)


def test_rerank_accepts_only_the_orm():
    from training.orm import orm_users
    assert orm_users(composed("eval.rerank=orm")) == ["rerank"]
    assert orm_users(composed("search=tot", "search/evaluator=value_model", "trainer=grpo", "trainer.reward=orm")) == [
        "trainer", "evaluator"]
    assert orm_users(composed()) == []
    with pytest.raises(ValueError, match="eval.rerank: 'prm' is not one of"):
        orm_users(composed("eval.rerank=prm"))


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_readme_grpo_dense_command_scores_each_trace_by_its_summed_step_rewards(tmp_path, cache):
    """`python -m training.run trainer=grpo search=sampling search.n=8 trainer.reward=dense`, at tiny size."""
    cfg = composed("trainer=grpo", "search=sampling", "search.n=8", "trainer.reward=dense", *TINY,
                   *TRAINER["grpo"], f"++policy.cache_dir={cache}")
    train = [r for r in run(cfg, tmp_path) if r["kind"] == "train"][0]
    task = build_task(cfg.task)
    problems = {p.id: p for p in task.problems("train", limit=cfg.train_problems, seed=cfg.seed)}
    traces = [json.loads(line) for line in (tmp_path / "traces" / "iter_001.jsonl").read_text().splitlines()]
    sums = [sum(step_rewards(task, problems[t["problem_id"]], t["completion"], "dense")) for t in traces]
    assert train["traces_dropped"] == 0 and train["pg_rollouts"] == len(traces) == 24
    assert train["mean_trace_score"] == pytest.approx(sum(sums) / len(sums))
    assert {"ratio_dev", "entropy", "sampler_ratio_dev"} <= train.keys() and train["ratio_dev"] < 1e-3


ORM_RUN = ["trainer=ppo", "trainer.reward=orm", "search=tot", "search/evaluator=value_model", "search.k=2",
           "search.beam=1", "search.max_depth=2", "eval.rerank=orm", *TINY, "save_trees=3", *TRAINER["ppo"]]


@pytest.mark.slow
def test_the_runs_orm_rewards_guides_search_reranks_and_resumes(tmp_path, cache):
    straight = tmp_path / "straight"
    rows = run(composed(*ORM_RUN, "iterations=2", f"++policy.cache_dir={cache}"), straight)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert all("rerank@k" in r for r in evals) and all({"orm_loss", "orm_positive"} <= r.keys() for r in train)

    def node_values(iteration):
        trees = [json.loads(p.read_text()) for p in (straight / "trees" / f"iter_{iteration:03d}").glob("*.json")]
        return [n["value"] for t in trees for n in t["nodes"] if n["value"] is not None]
    assert set(node_values(1)) == {0.5}  # round 1 searches with the untrained ORM
    assert len(set(node_values(2))) > 1  # round 2 with the ORM fitted on round 1's labelled traces
    state = torch.load(straight / "checkpoints" / "iter_002" / "trainer_state.pt", weights_only=True)
    assert state["trainer"]["orm"]["dataset"] and "model" in state["trainer"]["orm"]

    resumed = tmp_path / "resumed"
    run(composed(*ORM_RUN, "iterations=1", f"++policy.cache_dir={cache}"), resumed)
    again = run(composed(*ORM_RUN, "iterations=2", "resume=true", f"++policy.cache_dir={cache}"), resumed)
    # sampler_ratio_dev compares the engine's log-probs with a recomputation: a resumed run's
    # empty prefix cache changes their last bits (2.4e-7 vs 2.6e-7), nothing it samples
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_time") and k != "sampler_ratio_dev"}  # noqa: E731
                        for r in rs]
    assert strip(again) == strip(rows)
    assert [r.get("sampler_ratio_dev") for r in again] == pytest.approx([r.get("sampler_ratio_dev") for r in rows],
                                                                         abs=1e-6)
