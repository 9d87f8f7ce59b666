"""The 2025 exploration baselines (issue 16) against hand-worked numbers, and their trainer
plumbing on a real tiny Llama: KL-Cov / Clip-Cov, top-entropy masking, the pass@k advantage,
TreeRL's tree advantages, reference resets and micro-batched (BroRL-size) updates."""

import copy
import math

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget
from search.sampling import Sampling
from tasks.countdown import Countdown
from training import core_algos as ca
from training.grpo import GRPO
from training.ppo import PPO
from training.rollouts import tree_step_advantages

from test_core_algos import approx, hand_tree

LP3 = torch.log(torch.tensor([[0.6, 0.5, 0.5]]))  # centred: [0.1216, -0.0608, -0.0608]
OLD3 = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
ADV3 = torch.tensor([[1.0, 0.0, -1.0]])  # centred covariance with LP3: [0.1216, 0, 0.0608]


def test_top_covariance_picks_the_highest_and_at_least_one():
    logp, adv = torch.tensor([[-1.0, -2.0, -3.0, -4.0]]), torch.tensor([[2.0, 0.0, -1.0, -1.0]])
    # adv mean 0, logp centred [1.5, 0.5, -0.5, -1.5] -> covariance [3, 0, 0.5, 1.5]
    assert ca.top_covariance(logp, adv, torch.ones(1, 4), 0.5).tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert ca.top_covariance(logp, adv, torch.ones(1, 4), 1e-3).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    masked = ca.top_covariance(logp, adv, torch.tensor([[0.0, 1.0, 1.0, 1.0]]), 0.34)  # token 0 is padding
    assert masked.tolist()[0][0] == 0.0 and masked.sum() == 1
    with pytest.raises(ValueError, match="trainer.cov_fraction"):
        ca.top_covariance(logp, adv, torch.ones(1, 4), 0.0)


def test_kl_cov_penalises_the_top_covariance_token_only():
    logp = LP3.clone().requires_grad_(True)
    loss, stats = ca.POLICY_LOSSES["kl_cov"](logp, OLD3, ADV3, torch.ones(1, 3), cov_fraction=0.34)
    # unclipped -A r = [-1.2, 0, 1.0]; token 0 (top covariance) adds |log 1.2|
    assert loss.item() == pytest.approx((-1.2 + math.log(1.2) + 1.0) / 3, abs=1e-6)
    assert stats["cov_frac"].item() == pytest.approx(1 / 3)
    loss.backward()
    assert approx(logp.grad, [[(-1.2 + 1.0) / 3, 0.0, 1.0 / 3]])


def test_clip_cov_stops_the_gradient_of_the_top_unclipped_token():
    logp = LP3.clone().requires_grad_(True)
    # clip 0.1: token 0 (ratio 1.2, A = 1) is already clipped, so the pick is token 2 (covariance 0.0608)
    loss, stats = ca.POLICY_LOSSES["clip_cov"](logp, OLD3, ADV3, torch.ones(1, 3), clip_low=0.1, cov_fraction=0.34)
    assert loss.item() == pytest.approx(-1.1 / 3)
    loss.backward()
    assert approx(logp.grad, [[0.0, 0.0, 0.0]])
    logp = LP3.clone().requires_grad_(True)  # clip 0.5: nothing clipped, token 0 is picked
    loss, _ = ca.POLICY_LOSSES["clip_cov"](logp, OLD3, ADV3, torch.ones(1, 3), clip_low=0.5, cov_fraction=0.34)
    assert loss.item() == pytest.approx(1.0 / 3)
    loss.backward()
    assert approx(logp.grad, [[0.0, 0.0, 1.0 / 3]])


def test_top_entropy_mask_keeps_the_upper_quantile_of_real_tokens():
    entropy, mask = torch.tensor([[0.1, 0.5, 0.9, 0.3]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert ca.top_entropy_mask(entropy, mask, 0.5).tolist() == [[0.0, 1.0, 1.0, 0.0]]  # median of 0.1 0.5 0.9 is 0.5
    assert ca.top_entropy_mask(entropy, mask, 1.0).tolist() == mask.tolist()
    with pytest.raises(ValueError, match="trainer.top_entropy_quantile"):
        ca.top_entropy_mask(entropy, mask, 0.0)


def test_pass_at_k_advantages():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    adv = ca.pass_at_k_advantages(scores, groups, k=2, eps=0.0)
    # a: N=4, 1 correct: mean = 1 - C(3,2)/C(4,2) = 0.5, std 0.5; wrong: (1 - 0.5 - C(2,1)/C(3,1)) / 0.5 = -1/3
    # b: 2 correct: mean = 1 - 1/6, std = sqrt(5)/6; right (1/6)/std, wrong (1/6 - 1/3)/std; c: nobody right -> 0
    r = 1 / math.sqrt(5)
    assert approx(adv, [1.0, -1 / 3, -1 / 3, -1 / 3, r, r, -r, -r, 0.0, 0.0])
    k1 = ca.pass_at_k_advantages(scores[:4], ["a"] * 4, k=1, eps=0.0)  # k = 1: GRPO with the population std
    assert approx(k1, [0.75 / math.sqrt(0.1875)] + [-0.25 / math.sqrt(0.1875)] * 3)
    assert approx(ca.pass_at_k_advantages(scores[:4], ["a"] * 4, k=4), [0.0] * 4)  # every 4-subset passes


def test_tree_advantages_local_global_and_both():
    t = hand_tree()  # values {0: .75, 1: .5, 2: 1, 3: 1, 4: 0, 5: 1, 6: 1, 7: 1}
    assert tree_step_advantages(t, "local") == {1: -0.25, 2: 0.25, 3: 0.5, 4: -0.5, 5: 0.0, 6: 0.0, 7: 0.0}
    assert tree_step_advantages(t, "global") == {1: -0.25, 2: 0.25, 3: 0.25, 4: -0.75, 5: 0.25, 6: 0.25, 7: 0.25}
    assert tree_step_advantages(t, "both") == {1: -0.5, 2: 0.5, 3: 0.75, 4: -1.25, 5: 0.25, 6: 0.25, 7: 0.25}
    with pytest.raises(ValueError, match="trainer.tree_advantage"):
        tree_step_advantages(t, "sideways")


def test_bad_options_name_their_key():
    with pytest.raises(ValueError, match="trainer.cov_fraction is for policy_loss kl_cov"):
        GRPO(cov_fraction=0.01)
    with pytest.raises(ValueError, match="trainer.advantage=pass_at_k uses the verifier"):
        GRPO(advantage="pass_at_k", reward="dense")
    with pytest.raises(ValueError, match="alternatives"):
        GRPO(group="siblings", tree_advantage="both")
    with pytest.raises(ValueError, match="trainer.tree_advantage"):
        PPO(tree_advantage="up")
    with pytest.raises(ValueError, match="trainer.micro_batch_size"):
        GRPO(micro_batch_size=0)


# ------------------------------------------------------------------ on a real tiny model

TASK = dict(min_numbers=2, max_numbers=2, number_range=(1, 4), target_range=(1, 16), train_size=20,
            test_size=2, reference_count=2)


@pytest.fixture(scope="module")
def raw():
    model, tokenizer = build_tiny_model("1m", seed=0)
    return Countdown(**TASK), HFPolicy(model, tokenizer), copy.deepcopy(model.state_dict())


def rollouts_of(raw, n, problems=4, seed=11):
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    results = Sampling(n=n, batch=n, max_new_tokens=32, seed=seed).search(
        task.problems("train", limit=problems, seed=5), policy, task, Budget())
    return task, policy, results


def first_trace_succeeds(raw):
    """A sampled round (4 problems x 4 traces) whose first trace per problem is marked the
    success (reward 1) and the rest failures: the untrained policy solves nothing itself."""
    task, policy, results = rollouts_of(raw, n=4)
    for r in results:
        for i, leaf in enumerate(r.tree.terminals()):
            r.tree[leaf]["reward"] = float(i == 0)
    return task, policy, results


def test_micro_batches_bound_the_forward_and_give_the_same_step(raw):
    task, policy, results = rollouts_of(raw, n=6)
    rows: list[int] = []
    hook = policy.model.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["input_ids"].shape[0]),
                                                  with_kwargs=True)
    after = []
    try:
        for micro in (None, 5):
            policy.model.load_state_dict(raw[2])
            rows.clear()
            trainer = GRPO(lr=1e-3, minibatch_size=24, kl_coef=0.1, entropy_coef=0.01, micro_batch_size=micro)
            trainer.setup(policy, task)
            stats = trainer.step(1, results)
            after.append({k: v.clone() for k, v in policy.model.state_dict().items()})
            assert max(rows) == (24 if micro is None else 5) and stats["pg_updates"] == 1
    finally:
        hook.remove()
    assert any(not torch.equal(raw[2][k], v) for k, v in after[0].items())
    assert all(torch.allclose(after[0][k], v, atol=1e-6) for k, v in after[1].items())


def test_reference_reset_every_two_iterations_and_resume(raw):
    task, policy, results = rollouts_of(raw, n=4)
    trainer = GRPO(lr=1e-3, minibatch_size=8, kl_coef=0.1, entropy_coef=0.01, reset_reference_every=2)
    trainer.setup(policy, task)
    resets = []
    for it in (1, 2, 3):
        before = copy.deepcopy(policy.model.state_dict())
        resets.append(trainer.step(it, results)["reference_reset"])
        if it == 2:
            saved_policy, saved_trainer = copy.deepcopy(policy.model.state_dict()), copy.deepcopy(trainer.state_dict())
    assert resets == [0.0, 0.0, 1.0]  # after 2 updates, at the start of iteration 3
    assert all(torch.equal(before[k], v) for k, v in trainer.ref_model.state_dict().items())
    assert any(not torch.equal(raw[2][k], v) for k, v in before.items())
    continued = copy.deepcopy(policy.model.state_dict())
    resumed = GRPO(lr=1e-3, minibatch_size=8, kl_coef=0.1, entropy_coef=0.01, reset_reference_every=2)
    policy.model.load_state_dict(raw[2])
    resumed.setup(policy, task)
    policy.model.load_state_dict(saved_policy)
    resumed.load_state_dict(saved_trainer)
    assert resumed.step(3, results)["reference_reset"] == 1.0
    assert all(torch.equal(continued[k], v) for k, v in policy.model.state_dict().items())


def test_negative_weight_scales_only_the_negative_advantages():
    adv = torch.tensor([[1.5, -2.0, 0.0, -0.5]])
    assert ca.weight_negative_advantages(adv, 0.25).tolist() == [[1.5, -0.5, 0.0, -0.125]]
    assert ca.weight_negative_advantages(adv, 1.0) is adv
    with pytest.raises(ValueError, match="trainer.negative_weight"):
        GRPO(negative_weight=-0.1)


def test_without_the_negative_advantages_grpo_pulls_its_successes_up_and_pushes_failures_down_less(raw):
    """On a sampled round whose first trace per problem is marked the success (reward 1) and
    the rest failures, a step at negative_weight 0 raises the successes and lowers the
    failures less than the same step at 1, as the update-shift probe measures it."""
    from training.update_shift import logp_shift, round_traces, trace_logps

    task, policy, results = first_trace_succeeds(raw)
    probe = round_traces(results)
    shifts = {}
    for weight in (1.0, 0.0):
        policy.model.load_state_dict(raw[2])
        before = trace_logps(policy, probe)
        trainer = GRPO(lr=1e-3, minibatch_size=16, kl_coef=0.0, negative_weight=weight)
        trainer.setup(policy, task)
        assert trainer.step(1, results)["pg_rollouts"] == 16
        shifts[weight] = logp_shift(probe, before, trace_logps(policy, probe))
    # measured: weight 1 moved them +2.87 / -2.77 nats a trace, weight 0 +3.65 / -1.57
    assert shifts[0.0]["logp_shift_invalid"] > shifts[1.0]["logp_shift_invalid"] + 0.5
    assert shifts[0.0]["logp_shift_valid"] > shifts[1.0]["logp_shift_valid"] > 0


def test_ppo_weights_the_policy_term_only_its_critic_learns_the_same_returns(raw):
    """negative_weight acts on the policy gradient after GAE: the critic's value targets
    (returns) are the same at weight 0 and 1, and the policy steps differ."""
    task, policy, results = first_trace_succeeds(raw)
    returns, weights = {}, {}
    for weight in (1.0, 0.0):
        policy.model.load_state_dict(raw[2])
        trainer = PPO(lr=1e-3, minibatch_size=16, kl_coef=0.0, lam=1.0, negative_weight=weight)
        trainer.setup(policy, task)
        # the outcome as marked on the tree (the trainer's own would re-verify the untrained samples: all 0)
        trainer.token_rewards = lambda rs: [[0.0] * (len(r.response_ids) - 1) + [r.trace.reward] for r in rs]

        def recording(rs, weight=weight, assign=trainer.assign_advantages):  # keeps the critic's value targets
            stats = assign(rs)
            returns[weight] = [list(r.returns) for r in rs]
            return stats

        trainer.assign_advantages = recording
        trainer.step(1, results)
        weights[weight] = {k: v.clone() for k, v in policy.model.state_dict().items()}
    assert returns[0.0] == returns[1.0] and any(returns[1.0])
    assert any(not torch.allclose(weights[0.0][k], v) for k, v in weights[1.0].items())
