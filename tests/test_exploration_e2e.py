"""Every exploration baseline and tree-rollout option of issue 16 trains the easy Countdown
base for 3 iterations without collapse, and every row of +experiment=plateau_baselines runs
by config alone through `training.run`.

The no-collapse bar (measured 2026-12-01 on this machine): one Sampling(n=8) draw on the 16
problems below has mean reward 0.119 with sd 0.021 over 10 seeds on the base. Base and
trained reward are each the mean of two such draws (seeds 1000, 1001), so their difference
has sd ~0.021 for a policy that does not move; a row fails when the trained reward is more
than 3 sd (0.065) below the base's, i.e. when it loses about half of it. (3 iterations on 24
problems gave base 0.172 -> 0.227 to 0.328 for the seven rows.)"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composing import composed
from easy_countdown import easy_policy, easy_task, mean_reward
from search import Budget
from search.entropy_tree import EntropyTree
from search.sampling import Sampling
from tiny_run import TINY_RUN
from training.report import collect_runs, summarise
from training.grpo import GRPO
from training.ppo import PPO

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.065
GRPO_ARGS = dict(lr=1e-4, minibatch_size=64, epochs=1, kl_coef=0.01, seed=0)
ROWS = {
    "kl_cov": (lambda: GRPO(policy_loss="kl_cov", **GRPO_ARGS), "sampling"),
    "clip_cov": (lambda: GRPO(policy_loss="clip_cov", **GRPO_ARGS), "sampling"),
    "top_entropy": (lambda: GRPO(top_entropy_quantile=0.2, **GRPO_ARGS), "sampling"),
    "pass_at_k": (lambda: GRPO(advantage="pass_at_k", pass_k=4, **GRPO_ARGS), "sampling"),
    "reset+micro": (lambda: GRPO(reset_reference_every=1, micro_batch_size=16, **GRPO_ARGS), "sampling"),
    "treerl-grpo": (lambda: GRPO(tree_advantage="both", **GRPO_ARGS), "entropy_tree"),
    "treerl-ppo": (lambda: PPO(lr=1e-4, minibatch_size=64, epochs=1, advantage="tree", tree_advantage="global",
                               seed=0), "entropy_tree"),
}


@pytest.fixture(scope="module")
def easy():
    task, policy = easy_task(), easy_policy()
    problems = task.problems("train", limit=16, seed=0)
    weights = copy.deepcopy(policy.model.state_dict())
    return task, policy, problems, weights, measure(policy, task, problems)


def measure(policy, task, problems) -> float:
    return sum(mean_reward(Sampling(n=8, max_new_tokens=48, seed=s).search(problems, policy, task, Budget()))
               for s in (1000, 1001)) / 2


def search(kind, seed):
    if kind == "sampling":
        return Sampling(n=8, max_new_tokens=48, seed=seed)
    return EntropyTree(m=4, forks=2, branch=2, rounds=1, max_new_tokens=48, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("row", list(ROWS))
def test_trains_three_iterations_without_collapse(easy, row):
    task, policy, problems, weights, base = easy
    policy.model.load_state_dict(weights)
    make, kind = ROWS[row]
    trainer = make()
    trainer.setup(policy, task)
    for it in (1, 2, 3):
        stats = trainer.step(it, search(kind, seed=it).search(problems, policy, task, Budget()))
        assert stats["pg_updates"] >= 1
    trained = measure(policy, task, problems)
    print(f"{row}: base {base:.3f} -> trained {trained:.3f}")
    assert trained > base - MARGIN, (row, base, trained)


BASELINES = ["grpo", "clip_higher", "entropy_bonus", "kl_cov", "clip_cov", "top_entropy", "pass_at_k", "prorl", "brorl",
             "treerl"]


@pytest.mark.slow
def test_every_baseline_row_runs_through_training_run_and_reports_as_its_own_cell(tmp_path):
    env = {**os.environ, "PLATEAU_CACHE": str(tmp_path / "cache")}
    overrides = ["+experiment=plateau_baselines", f"baseline={','.join(BASELINES)}", "seed=0", *TINY_RUN,
                 "trainer.minibatch_size=4", "budget.tokens_per_problem=64", "policy.pretrain.lines=400",
                 "policy.pretrain_epochs=1", "eval.lab.samples=2", "eval.lab.max_new_tokens=24",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run([sys.executable, "-m", "training.run", "-m", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = collect_runs(tmp_path / "sweep")
    assert all(r.problem is None for r in runs), [(r.trainer, r.problem) for r in runs]
    for r in runs:
        assert r.trains[0]["pg_updates"] >= 1 and "reference_reset" in r.trains[0], r.trainer
        assert 0 < r.trains[0]["search_tokens"] <= 2 * 64, r.trainer  # 2 problems, 64 tokens each: equal budgets
    cells = {(row["strategy"], row["trainer"]) for row in summarise(runs)}
    expected = {("sampling", "grpo")} | {("sampling", f"grpo+{b}") for b in BASELINES[1:-1]}
    assert cells == expected | {("entropy_tree", "grpo+treerl")}


def test_the_baseline_rows_take_the_laboratory_arms_update_size_unless_a_row_sets_its_own():
    grpo = composed("+experiment=plateau_baselines")
    brorl = composed("+experiment=plateau_baselines", "baseline=brorl")
    kl_cov = composed("+experiment=plateau_baselines", "baseline=kl_cov")
    assert (grpo.trainer.minibatch_size, grpo.trainer.micro_batch_size, grpo.trainer.target_kl) == (128, 32, 0.1)
    assert (kl_cov.trainer.minibatch_size, kl_cov.trainer.policy_loss) == (128, "kl_cov")
    assert (brorl.trainer.minibatch_size, brorl.train_problems) == (256, 224)  # its own row's settings win
