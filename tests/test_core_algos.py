"""The pure algorithms of training/core_algos.py against numbers worked out by hand."""

import math

import pytest
import torch

from search import SearchTree
from training import core_algos as ca
from training.rollouts import sibling_step_advantages, tree_step_advantages, tree_values


def approx(values, expected, tol=1e-5):
    return torch.allclose(torch.as_tensor(values, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                          atol=tol)


def test_gae_on_a_short_trajectory_and_a_padded_row():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, 0.4, 9.0]])  # row 2's last entry is padding garbage
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = ca.gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 1: deltas 0.1, 0.2, 0.2 -> A2 = 0.2, A1 = 0.2 + 0.5*0.2 = 0.3, A0 = 0.1 + 0.5*0.3 = 0.25
    # row 2: deltas 0.2, 0.6 (the value after the last token is 0) -> A0 = 0.2 + 0.5*0.6 = 0.5
    assert approx(adv, [[0.25, 0.3, 0.2], [0.5, 0.6, 0.0]])
    assert approx(ret, [[0.75, 0.9, 1.0], [0.7, 1.0, 0.0]])


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.8]])
    adv, _ = ca.gae_advantages(rewards, values, torch.ones(1, 3), gamma=0.9, lam=1.0)
    assert approx(adv, [[0.81 - 0.5, 0.9 - 0.6, 1.0 - 0.8]])


def test_clipped_ppo_loss_value_clip_fraction_and_gradient_signs():
    # token 1: ratio 0.75/0.5 = 1.5, A = +1 -> clipped at 1.2, term -1.2, no gradient
    # token 2: ratio 0.45/0.5 = 0.9, A = -1 -> inside the range, term 0.9, d/dlogp = 0.9
    # token 3: ratio 0.25/0.5 = 0.5, A = +1 -> pessimistic min keeps the unclipped -0.5, d/dlogp = -0.5
    logp = torch.log(torch.tensor([[0.75, 0.45, 0.25]])).requires_grad_(True)
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    adv, mask = torch.tensor([[1.0, -1.0, 1.0]]), torch.ones(1, 3)
    loss, stats = ca.ppo_policy_loss(logp, old, adv, mask, clip_low=0.2)
    assert loss.item() == pytest.approx((-1.2 + 0.9 - 0.5) / 3)
    assert stats["clip_frac"].item() == pytest.approx(1 / 3)
    loss.backward()
    assert approx(logp.grad, [[0.0, 0.9 / 3, -0.5 / 3]])
    # gradient descent lowers the negative-advantage token and raises the positive one


def test_ppo_loss_two_tokens_with_clip_higher_and_mask():
    logp = torch.log(torch.tensor([[0.75, 0.3]])).requires_grad_(True)
    old = torch.log(torch.tensor([[0.5, 0.3]]))
    loss, _ = ca.ppo_policy_loss(logp, old, torch.tensor([[2.0, 7.0]]), torch.tensor([[1.0, 0.0]]),
                                 clip_low=0.2, clip_high=0.4)
    assert loss.item() == pytest.approx(-2.0 * 1.4)  # ratio 1.5 clipped at 1 + 0.4; token 2 masked out
    loss.backward()
    assert approx(logp.grad, [[0.0, 0.0]])


def test_value_loss_clipping():
    old, mask = torch.tensor([[0.5, 0.5]]), torch.ones(1, 2)
    # token 1: V = 1.0, R = 0.8: unclipped 0.04 vs clipped (0.7 - 0.8)^2 = 0.01 -> 0.04
    # token 2: V = 1.0, R = 1.2: unclipped 0.04 vs clipped (0.7 - 1.2)^2 = 0.25 -> 0.25 (clipped wins)
    loss, frac = ca.value_loss(torch.tensor([[1.0, 1.0]]), old, torch.tensor([[0.8, 1.2]]), mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.04 + 0.25) / 2)
    assert frac.item() == pytest.approx(0.5)
    plain, _ = ca.value_loss(torch.tensor([[1.0, 1.0]]), old, torch.tensor([[0.8, 1.2]]), mask, clip=None)
    assert plain.item() == pytest.approx(0.5 * 0.04)


def test_kl_estimators():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    ln2 = math.log(2)
    assert ca.kl_penalty(logp, ref, "k1").item() == pytest.approx(ln2)
    assert ca.kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * ln2**2)
    assert ca.kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 + ln2 - 1)  # exp(-ln 2) + ln 2 - 1
    assert ca.kl_penalty(logp, logp, "k3").item() == 0.0
    with pytest.raises(ValueError, match="kl_estimator: 'k9'"):
        ca.kl_penalty(logp, ref, "k9")


def test_grpo_group_advantages():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    groups = ["a", "a", "a", "a", "b", "b", "c"]
    adv = ca.group_advantages(scores, groups, norm_std=True, eps=0.0 + 1e-12)
    s = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1)
    assert approx(adv, [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0])
    assert approx(ca.group_advantages(scores, groups, norm_std=False), [0.5, -0.5, -0.5, 0.5, 0, 0, 0])


def hand_tree():
    """root ─ a ─ a1 (r=1), a2 (r=0);  root ─ b ─ b1 ─ b11 (r=1), b ─ b2 (r=1);  root ─ c (unfinished)."""
    t = SearchTree("p", "prompt\n")
    a, b = t.add_child(0, "a\n"), t.add_child(0, "b\n")
    t.add_child(a, "a1\n", terminal=True, reward=1.0)
    t.add_child(a, "a2\n", terminal=True, reward=0.0)
    b1 = t.add_child(b, "b1\n")
    t.add_child(b1, "b11\n", terminal=True, reward=1.0)
    t.add_child(b, "b2\n", terminal=True, reward=1.0)
    t.add_child(0, "c")
    return t


def test_tree_values_and_advantages_on_a_hand_built_tree():
    t = hand_tree()  # ids: a=1 b=2 a1=3 a2=4 b1=5 b11=6 b2=7 c=8
    assert tree_values(t) == {0: 0.75, 1: 0.5, 2: 1.0, 3: 1.0, 4: 0.0, 5: 1.0, 6: 1.0, 7: 1.0}
    assert tree_step_advantages(t) == {1: -0.25, 2: 0.25, 3: 0.5, 4: -0.5, 5: 0.0, 6: 0.0, 7: 0.0}


def test_sibling_advantages_on_a_hand_built_tree():
    adv = sibling_step_advantages(hand_tree(), norm_std=True, eps=0.0)
    r = 1 / math.sqrt(2)  # (x - mean) / unbiased std for a pair of distinct values
    expected = {1: -r, 2: r, 3: r, 4: -r, 5: 0.0, 6: 0.0, 7: 0.0}
    assert set(adv) == set(expected) and all(adv[n] == pytest.approx(v) for n, v in expected.items())


def test_entropy_from_logits():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])
    assert approx(ca.entropy_from_logits(logits), [math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])


def test_aggregation_modes_and_registry_errors():
    loss, mask = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert ca.aggregate(loss, mask, "token-mean").item() == pytest.approx(3.0)
    assert ca.aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2.0 + 5.0) / 2)
    with pytest.raises(ValueError, match="loss_agg"):
        ca.aggregate(loss, mask, "sum")
    assert {"ppo", "kl_cov", "clip_cov"} <= set(ca.POLICY_LOSSES) and {"k1", "k2", "k3"} <= set(ca.KL_ESTIMATORS)
