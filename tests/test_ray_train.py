"""Data-parallel training on a local Ray: 2 Ray Train workers with gloo and DDP take
the step one process takes, for SFT, Expert Iteration, GRPO and PPO (shared and separate
critic), on real tiny models and real searched traces.

The batches are odd-sized, so the two workers' slices differ in rows and tokens, and a
micro batch of one row leaves one worker an empty slice. Gradient clipping is off and the
AdamW moments are compared as well as the weights: Adam's step is nearly invariant to the
gradient's scale, its first moment is not, so a slice weighted by the wrong normaliser (a
per-worker mean, a missing factor of the world size, the value loss weighted by rows under
seq-mean-token-mean) fails the moments even where the weights would agree."""

import copy
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from composing import composed
from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget
from search.sampling import Sampling
from tasks.countdown import Countdown
from tiny_run import TINY_RUN
from training.cluster import build_step_runner
from training.cluster.ddp import RayTrainDDP
from training.ei import ExpertIteration
from training.grpo import GRPO
from training.ppo import PPO
from training.step_runner import InProcess

ray = pytest.importorskip("ray", reason='pip install -e ".[ray]"')
from local_ray import local_ray as start_local_ray  # noqa: E402  (needs ray)

CLUSTER = OmegaConf.create({"kind": "ray", "address": None, "rollout_workers": 1, "train_workers": 2,
                            "cpus_per_worker": 1, "gpus_per_worker": 0, "max_restarts": 0, "object_store_mb": 100})
TASK = dict(min_numbers=2, max_numbers=2, number_range=(1, 4), target_range=(1, 16), train_size=20,
            test_size=2, reference_count=2)


class TextScorer:
    """A reward model for `reward: orm` whose scores vary between traces: the untrained tiny
    policy's traces all get reward 0 from the task, which would leave every advantage 0."""

    def value(self, texts: list[str]) -> list[float]:
        return [(sum(map(ord, t)) % 11) / 10 for t in texts]


SCORER = TextScorer()


@pytest.fixture(scope="module")
def local_ray():
    # 3 logical CPUs, as a run's own local Ray declares for 1 rollout worker and 2 train workers:
    # the rollout actor keeps its CPU while the train workers run (it is idle then)
    with start_local_ray(3) as started:
        yield started


@pytest.fixture(scope="module")
def searched():
    """A tiny policy's initial weights and 3 problems x 3 sampled traces of it."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    task = Countdown(**TASK)
    results = Sampling(n=3, batch=3, max_new_tokens=24, seed=11).search(
        task.problems("train", limit=3, seed=5), HFPolicy(model, tokenizer), task, Budget())
    return task, model, tokenizer, results


def train_both(searched, make, iterations=1):
    """The same trainer stepped in this process and on 2 Ray Train workers, each on its own
    copy of the initial policy: (single, parallel) as (trainer, weights, stats of the last step)."""
    task, model, tokenizer, results = searched
    out = []
    for runner in (InProcess(), RayTrainDDP(CLUSTER)):
        policy = HFPolicy(copy.deepcopy(model), tokenizer)
        trainer = make(runner)
        trainer.setup(policy, task)
        for iteration in range(1, iterations + 1):
            stats = trainer.step(iteration, results)
        out.append((trainer, policy.model.state_dict(), stats))
    assert out[1][2].pop("train_workers") == 2 and "train_workers" not in out[0][2]
    assert out[0][2] == pytest.approx(out[1][2], rel=1e-4, abs=1e-6)  # loss, tokens, pg_loss, kl, ... alike
    return out


def assert_same_weights(single, parallel, start):
    """Equal to a small share of one step: Adam divides by sqrt(v), which amplifies float noise
    on parameters whose gradient is near eps (measured 9e-5 after two steps at lr 1e-2); the
    moments, linear in the gradients, are compared tightly."""
    if start is not None:  # the step changed the weights, so equal weights say the steps were equal
        assert max(float((v - start[k]).abs().max()) for k, v in single.items()) > 5e-3
    for k, v in single.items():
        assert float((parallel[k] - v).abs().max()) < 5e-4, k


def assert_same_moments(single: torch.optim.Optimizer, parallel: torch.optim.Optimizer, rel: float = 1e-4):
    """AdamW's step count and moments per parameter, to `rel` of each tensor's largest entry
    (one step, measured: 4e-6): the gradients' scale, not only their sign. A slice weighted by
    a wrong normaliser moves them by a few percent (5/9 against 1/2) or by half (the world factor).
    A tensor whose moments are under 1e-3 of the largest of any tensor (a gradient of ~0) holds
    only summation-order noise, so its scale is floored there: one such exp_avg_sq, max 5e-9,
    differed by 1.1e-4 of itself on a fresh machine, 6e-13 in absolute terms."""
    a, b = single.state_dict()["state"], parallel.state_dict()["state"]
    assert a.keys() == b.keys() and a
    for name in ("exp_avg", "exp_avg_sq"):
        floor = 1e-3 * max(float(state[name].abs().max()) for state in a.values())
        for i in a:
            assert int(a[i]["step"]) == int(b[i]["step"])
            scale = max(float(a[i][name].abs().max()), floor)
            assert float((b[i][name] - a[i][name]).abs().max()) <= rel * scale, (i, name)


@pytest.mark.slow
def test_two_gloo_workers_take_the_single_process_sft_step(local_ray):
    from functools import partial

    from training.sft import SFTConfig, sft_step

    model, tokenizer = build_tiny_model("1m", seed=0)
    start = copy.deepcopy(model.state_dict())
    examples = [(f"{i} + {i + 2} =", f" {2 * i + 2}") for i in range(7)]  # odd: the two slices differ in size
    step = partial(sft_step, tokenizer=tokenizer, examples=examples,
                   config=SFTConfig(epochs=1, batch_size=7, lr=1e-2, grad_clip=0.0))
    single = copy.deepcopy(model)
    runs = []
    for runner, m in ((InProcess(), single), (RayTrainDDP(CLUSTER), model)):
        optimizer = torch.optim.AdamW(m.parameters(), lr=1e-2)
        runs.append((runner.run(step, {"model": m}, optimizer), optimizer))
    assert runs[1][0]["train_workers"] == 2
    assert runs[1][0]["loss"] == pytest.approx(runs[0][0]["loss"], rel=1e-5)
    assert runs[1][0]["sft_tokens"] == runs[0][0]["sft_tokens"]
    assert_same_moments(runs[0][1], runs[1][1])
    assert_same_weights(single.state_dict(), model.state_dict(), start)


@pytest.mark.slow
def test_expert_iteration_on_two_workers_equals_one_process_and_keeps_its_optimizer(local_ray, searched):
    """Two rounds continuing from the current weights: the second starts from the AdamW state
    the workers handed back after the first, so equal weights after it say the state came back."""
    make = lambda runner: ExpertIteration(sft={"epochs": 1, "batch_size": 5, "lr": 1e-2, "grad_clip": 0.0},  # noqa: E731
                                          reset_each_round=False, good_threshold=0.0, runner=runner)
    (single, w1, stats), (parallel, w2, _) = train_both(searched, make, iterations=2)
    assert stats["dataset_size"] % 5 and stats["dataset_size"] > 5  # a short last batch, slices of unequal size
    # after several steps the moments follow weights that float noise has moved (Adam's 1/sqrt(v)
    # amplifies it, see assert_same_weights): measured up to 2e-4 of a tensor's scale, against the
    # 5-50% a wrong normaliser gives
    assert_same_moments(single.optimizer, parallel.optimizer, rel=2e-3)
    assert int(single.optimizer.state_dict()["state"][0]["step"]) == 2 * -(-stats["dataset_size"] // 5)
    assert_same_weights(w1, w2, searched[1].state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("make", [
    # one minibatch of all 9 rows (slices of 5 and 4); micro batches of 4, 4 and 1 (the last slice empty)
    lambda runner: GRPO(lr=1e-2, minibatch_size=16, micro_batch_size=4, kl_coef=0.1, entropy_coef=0.01,
                        reward="orm", orm=SCORER, grad_clip=None, runner=runner),
    # rows weigh alike: each slice by its share of the rows; two epochs of minibatches of 5 and 4
    lambda runner: GRPO(lr=1e-2, minibatch_size=5, epochs=2, loss_agg="seq-mean-token-mean", kl_coef=0.1,
                        reward="orm", orm=SCORER, grad_clip=None, runner=runner),
    # the value loss is a token mean under seq-mean-token-mean: weighted by the slice's tokens
    lambda runner: PPO(lr=1e-2, minibatch_size=16, loss_agg="seq-mean-token-mean", critic="shared",
                       reward="orm", orm=SCORER, grad_clip=None, runner=runner),
    lambda runner: PPO(lr=1e-2, minibatch_size=16, micro_batch_size=4, critic="separate", reward="orm",
                       orm=SCORER, grad_clip=None, runner=runner),
], ids=["grpo-token-mean-micro", "grpo-seq-mean-epochs", "ppo-shared-seq-mean", "ppo-separate-micro"])
def test_policy_gradient_on_two_workers_equals_one_process(local_ray, searched, make):
    (single, w1, stats), (parallel, w2, _) = train_both(searched, make)
    assert stats["pg_rollouts"] == 9  # odd: the slices differ
    # the scorer's rewards are not all 0, so neither are the advantages: the policy gradient itself is compared
    assert stats["informative_rollouts" if "informative_rollouts" in stats else "mean_token_reward_sum"] > 0
    assert_same_moments(single.optimizer, parallel.optimizer)
    assert_same_weights(w1, w2, searched[1].state_dict())
    for key, module in single.critic_modules().items():
        assert_same_weights(module.state_dict(), parallel.critic_modules()[key].state_dict(), None)


def config(*overrides):
    return composed(*TINY_RUN, *overrides)


def test_the_loop_gives_trainers_a_data_parallel_runner_only_for_ray_with_train_workers(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "plugin"))
    assert build_step_runner(config()) is None
    assert build_step_runner(config("cluster=ray", "cluster.train_workers=1")) is None
    runner = build_step_runner(config("cluster=ray", "cluster.train_workers=2"))
    assert isinstance(runner, RayTrainDDP) and runner.workers == 2
    with pytest.raises(ValueError, match=r"^cluster\.train_workers=2: trainer my_plugin\.shortest\.ShortestCorrect "
                                         r"takes no runner"):
        build_step_runner(config("cluster=ray", "cluster.train_workers=2",
                                 "trainer._target_=my_plugin.shortest.ShortestCorrect"))
    with pytest.raises(ValueError, match=r"^cluster\.train_workers=2: trainer\.policy_loss=kl_cov pick tokens"):
        GRPO(policy_loss="kl_cov", runner=runner)
    GRPO(policy_loss="kl_cov")  # in one process the selection sees the whole micro batch


@pytest.mark.slow
def test_a_run_with_two_train_workers_trains_as_one_process(local_ray, tmp_path):
    """`training.run cluster=ray cluster.train_workers=2`: the loop hands Expert Iteration the
    Ray Train runner, and the round trains what the single process trains."""
    from safetensors.torch import load_file

    from training.loop import run

    overrides = ["trainer.good_threshold=0.0", "trainer.sft.epochs=1", "search.n=3"]  # every trace is an example
    made = {"local": config(*overrides), "ray": config(*overrides, "cluster=ray", "cluster.rollout_workers=1",
                                                            "cluster.train_workers=2")}
    rows, weights = {}, {}
    for name, cfg in made.items():
        run(cfg, tmp_path / name)
        rows[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        weights[name] = load_file(tmp_path / name / "checkpoints" / "iter_001" / "model.safetensors")
    train = {name: next(r for r in found if r["kind"] == "train") for name, found in rows.items()}
    assert train["ray"]["train_workers"] == 2 and "train_workers" not in train["local"]
    assert train["ray"]["n_traces"] == train["local"]["n_traces"] == 2 * 3  # 1 rollout worker: the same search
    assert train["ray"]["sft_tokens"] == train["local"]["sft_tokens"] > 0
    assert train["ray"]["loss"] == pytest.approx(train["local"]["loss"], rel=1e-5)
    for k, v in weights["local"].items():
        assert float((weights["ray"][k] - v).abs().max()) < 5e-4, k
