"""What the policy-gradient trainers receive is what the sampler did: evolution's crossover
and rewrite nodes (issue 11, item 3), pi_old recomputed by the trained model (item 4),
dropped traces counted by reason, and the policy's entropy on its own samples, on a real
tiny Llama and its character tokenizer."""

import copy
import math

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchResult, SearchTree
from search.evolution import Evolution
from search.expand import Expansion, Sampler, expand, label_terminal, start
from search.sampling import Sampling
from tasks.countdown import Countdown
from training.ei import ExpertIteration
from training.grpo import GRPO
from training.ppo import PPO
from training.rollouts import build_rollouts, encode_trace, mask_off_context
from training.token_batch import make_batch, unpad

from composing import composed

TASK = dict(min_numbers=3, max_numbers=3, number_range=(1, 4), target_range=(1, 24), train_size=20, test_size=2,
            reference_count=2)
A = ["1 + 2 = 3 (left: 3 3)\n", "3 * 3 = 9 (left: 9)\n", "answer: (1 + 2) * 3\n"]
B = ["2 + 1 = 3 (left: 3 3)\n", "3 * 3 = 9 (left: 9)\n", "answer: 3 * (2 + 1)\n"]


@pytest.fixture(scope="module")
def raw():
    model, tokenizer = build_tiny_model("1m", seed=0)
    return Countdown(**TASK), HFPolicy(model, tokenizer), copy.deepcopy(model.state_dict())


def grow_trace(state, policy, task, steps):
    """Hang `steps` under the root as sampled nodes: the tokenizer's ids (EOS after the
    last step) with placeholder log-probs, the last one judged by the verifier."""
    node = state.tree.root
    for i, text in enumerate(steps):
        ids = policy.encode_continuation(text) + ([policy.tokenizer.eos_token_id] if i == len(steps) - 1 else [])
        node = state.tree.add_child(node, text, token_ids=ids, logprobs=[-1.0] * len(ids), tokens=len(ids),
                                    finish_reason="eos" if i == len(steps) - 1 else "stop")
    label_terminal(state, node, task)
    return node


def spliced_state(task, policy):
    """A problem whose two traces share their second step's text after different first steps,
    and the crossover child of the two (a's first two steps, then b's answer)."""
    state = start(task.problems("train", limit=1), task, Budget(), "evolution")[0]
    a, b = grow_trace(state, policy, task, A), grow_trace(state, policy, task, B)
    child = Evolution(seed=0).crossover(state, a, b, task)
    return state, b, child


def test_crossover_children_carry_the_sampled_token_ids_and_encode(raw):
    task, policy, _ = raw
    state, b, child = spliced_state(task, policy)
    tree = state.tree
    assert child is not None and tree.prefix(child) == A[0] + A[1] + B[2]
    assert tree[child]["token_ids"] == tree[b]["token_ids"] and tree[child]["logprobs"] == tree[b]["logprobs"]
    assert tree[child]["off_context"]  # sampled after B's first step, now after A's
    result = SearchResult(state.problem, tree, tokens=0, calls=0, wall_time=0.0)
    trace = next(t for t in tree.traces() if t.node_ids[-1] == child)
    rollout = encode_trace(policy, result, trace)  # raised TokenMismatch before: the copy had no ids
    assert mask_off_context(rollout) == len(tree[child]["token_ids"])
    cut = rollout.step_ends[1]
    assert rollout.loss_mask[:cut] == [1.0] * cut and set(rollout.loss_mask[cut:]) == {0.0}


def test_a_step_sampled_under_another_prompt_is_off_context(raw):
    task, policy, _ = raw
    state = start(task.problems("train", limit=1), task, Budget(), "evolution")[0]
    sampler = Sampler(max_new_tokens=8)
    plain, rewrite = expand([Expansion(state, 0, 1), Expansion(state, 0, 1, prompt="Rewrite this step: 1 + 1\n")],
                            policy, task, sampler, seed=0, iteration=0)
    assert not state.tree[plain[0]]["off_context"] and state.tree[rewrite[0]]["off_context"]


class MergingTokens:
    """Characters as ids, except that "xy" is one token: a step's text, tokenised after the
    text before it, can change the tokens before the step boundary."""

    def encode_prompt(self, text):
        ids, i = [], 0
        while i < len(text):
            merged = text.startswith("xy", i)
            ids.append(1000 if merged else ord(text[i]))
            i += 2 if merged else 1
        return ids


@pytest.mark.parametrize("guide_text, encodes", [("z", True), ("y", False)], ids=["extends", "merges"])
def test_a_step_no_sampler_wrote_is_encoded_from_its_text_only_if_that_extends_the_ids_before_it(guide_text, encodes):
    tree = SearchTree("p", "ax")  # the prompt ends in "x": a guide step starting with "y" merges into it
    guide = tree.add_child(tree.root, guide_text, off_context=True, finish_reason="guide")
    tree.add_child(guide, "b", token_ids=[ord("b")], logprobs=[-1.0], terminal=True, reward=1.0)
    result = SearchResult(None, tree, tokens=1, calls=1, wall_time=0.0)
    rollouts, dropped = build_rollouts(MergingTokens(), [result])
    if encodes:
        assert [r.response_ids for r in rollouts] == [[ord("z"), ord("b")]] and rollouts[0].loss_mask == [0.0, 1.0]
    else:
        assert rollouts == [] and dropped["retokenise"] == 1


def test_grpo_trains_spliced_traces_on_their_own_steps_and_counts_drops_by_reason(raw):
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    state, b, child = spliced_state(task, policy)
    broken = grow_trace(state, policy, task, ["1 + 3 = 4 (left: 4 2)\n", "answer: 1 + 3\n"])
    state.tree[state.tree.parent(broken)]["token_ids"] = policy.encode_continuation("1 + 3 = 4 (left: 4 2)")  # lost "\n"
    result = SearchResult(state.problem, state.tree, tokens=0, calls=0, wall_time=0.0)
    trainer = GRPO(lr=1e-4, minibatch_size=8, kl_coef=0.0)
    trainer.setup(policy, task)
    stats = trainer.step(1, [result])
    assert (stats["traces_dropped"], stats["traces_dropped_retokenise"], stats["traces_dropped_empty"]) == (1, 1, 0)
    assert stats["pg_rollouts"] == 3 and stats["off_context_tokens"] == len(state.tree[child]["token_ids"])
    rollouts, _ = build_rollouts(policy, [result])
    assert stats["pg_tokens"] == sum(len(r.response_ids) for r in rollouts) - stats["off_context_tokens"]


def test_ppo_gae_whitens_and_kl_penalises_only_the_tokens_it_trains(raw):
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    state, _, child = spliced_state(task, policy)
    result = SearchResult(state.problem, state.tree, tokens=0, calls=0, wall_time=0.0)
    trainer = PPO(lr=1e-4, minibatch_size=8, advantage="gae", kl_coef=0.05)
    trainer.setup(policy, task)
    trained = []
    trainer.update = lambda rollouts, iteration: trained.extend(rollouts) or {}  # stop before the update
    trainer.step(1, [result])
    with torch.no_grad():  # a reference unlike the policy, and varied values: non-zero KL and advantages
        for p in trainer.ref_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    trainer.score_rollouts(trained)
    values = torch.Generator().manual_seed(0)
    for r in trained:
        r.old_values = torch.randn(len(r.response_ids), generator=values).tolist()
    trainer.assign_advantages(trained)
    mask = [m for r in trained for m in r.loss_mask]
    adv = [a for r in trained for a, m in zip(r.advantages, r.loss_mask) if m]
    assert 0 < len(adv) < len(mask)  # the crossover child's answer step is context
    mean = sum(adv) / len(adv)
    assert abs(mean) < 1e-5 and sum((a - mean) ** 2 for a in adv) / len(adv) == pytest.approx(1.0, abs=1e-4)
    for r, rewards in zip(trained, trainer.token_rewards(trained)):
        ends = {e - 1 for e in r.step_ends}
        assert all(x == 0.0 for i, (x, m) in enumerate(zip(rewards, r.loss_mask)) if not m and i not in ends)
        assert any(x != 0.0 for i, (x, m) in enumerate(zip(rewards, r.loss_mask)) if m and i not in ends)


@pytest.mark.parametrize("make", [lambda mode: GRPO(lr=1e-4, minibatch_size=8, old_logp=mode),
                                  lambda mode: PPO(lr=1e-4, minibatch_size=8, old_logp=mode)], ids=["grpo", "ppo"])
def test_recomputed_old_logp_removes_the_bf16_sampler_mismatch(raw, make):
    """Sampling with a bf16 copy of the weights records log-probs ~1e-3 off the fp32 model's;
    recomputed pi_old starts every update at ratio 1."""
    task, _, weights = raw
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer, sample_dtype="bfloat16")
    results = Sampling(n=4, max_new_tokens=32, seed=1).search(task.problems("train", limit=8, seed=0), policy, task,
                                                              Budget())
    dev = {}
    for mode in ("recompute", "sampler"):
        model.load_state_dict(weights)
        trainer = make(mode)
        trainer.setup(policy, task)
        dev[mode] = trainer.step(1, results)
    print({m: {k: s[k] for k in ("ratio_dev", "sampler_ratio_dev") if k in s} for m, s in dev.items()})
    assert dev["recompute"]["ratio_dev"] < 1e-6
    assert dev["sampler"]["ratio_dev"] > 5e-4 and dev["sampler"]["ratio_dev"] > 100 * dev["recompute"]["ratio_dev"]
    assert dev["recompute"]["sampler_ratio_dev"] == pytest.approx(dev["sampler"]["ratio_dev"], rel=0.2)


def test_every_trainer_logs_the_policys_entropy_on_its_own_samples(raw):
    """The untrained model is near uniform over its 100-symbol vocabulary: entropy ~ ln 100,
    measured by the policy-gradient pass and by EI's no-grad pass alike."""
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    results = Sampling(n=2, max_new_tokens=24, seed=3).search(task.problems("train", limit=6, seed=0), policy, task,
                                                              Budget())
    ei = ExpertIteration(sft={"epochs": 1}, reset_each_round=False)
    ei.setup(policy, task)
    pg = GRPO(lr=1e-4, minibatch_size=8, kl_coef=0.0)
    pg.setup(policy, task)
    pg_stats = pg.step(1, results)
    policy.model.load_state_dict(weights)
    ei_stats = ei.step(1, results)
    assert abs(pg_stats["entropy"] - math.log(policy.model.config.vocab_size)) < 0.1
    assert ei_stats["entropy"] == pytest.approx(pg_stats["entropy"], abs=0.02)


def test_expert_iteration_counts_examples_too_long_to_train_whole(raw):
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    results = []
    for problem in task.problems("train", limit=3):
        state = start([problem], task, Budget(), "sampling")[0]
        for trace in task.reference_traces(problem)[:1]:
            grow_trace(state, policy, task, task.split_steps(trace))
        results.append(SearchResult(problem, state.tree, tokens=0, calls=0, wall_time=0.0))
    total = [len(policy.encode_prompt(t.prompt)) + sum(map(len, t.step_token_ids)) for r in results for t in r.traces()]
    limit = sorted(total)[1]  # prompt + completion + EOS: the longest example does not fit
    ei = ExpertIteration(sft={"epochs": 1, "max_length": limit}, reset_each_round=False)
    ei.setup(policy, task)
    stats = ei.step(1, results)
    assert stats["new_examples"] == 3
    assert stats["traces_dropped"] == stats["traces_dropped_length"] == sum(n > limit for n in total) >= 1


def test_grpo_dense_scores_a_trace_by_the_sum_of_its_step_rewards(raw):
    """A reference solution earns 1 per legal step and 1 for its answer; the same first step
    followed by a wrong answer earns 1; a trace that starts with an illegal step earns 0."""
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    problem = task.problems("train", limit=1)[0]
    steps = task.split_steps(task.reference_traces(problem)[0])
    state = start([problem], task, Budget(), "sampling")[0]
    for trace in (steps, steps[:1] + ["answer: 1 + 1\n"], ["9 * 9 = 81 (left: 81)\n", steps[-1]]):
        grow_trace(state, policy, task, trace)
    result = SearchResult(problem, state.tree, tokens=0, calls=0, wall_time=0.0)
    scores = {}
    for reward in ("sparse", "dense"):
        trainer = GRPO(lr=1e-4, minibatch_size=8, kl_coef=0.0, reward=reward)
        trainer.setup(policy, task)
        scores[reward] = trainer.step(1, [result])["mean_trace_score"]
    assert scores["sparse"] == pytest.approx(1 / 3)
    assert scores["dense"] == pytest.approx((len(steps) + 1 + 0) / 3)


@pytest.mark.slow
def test_recomputed_old_logp_removes_the_bf16_vllm_mismatch(model_dir, tmp_path):
    """policy=vllm in bf16 (the default engine dtype) through training.run: the sampler's
    log-probs sit ~1e-3 off the fp32 model being trained; recomputed pi_old starts at ratio 1."""
    pytest.importorskip("vllm")
    from training.loop import run
    dev = {}
    for mode in ("recompute", "sampler"):
        cfg = composed(
            "policy=vllm", f"policy.path={model_dir}", "policy.dtype=bfloat16", "policy.kv_cache_space_gib=0.25",
            "policy.max_model_len=512", "search=sampling", "search.n=4", "search.max_new_tokens=32", "trainer=grpo",
            "trainer.minibatch_size=8", f"trainer.old_logp={mode}", "task.train_size=20", "task.test_size=4",
            "iterations=1", "train_problems=8", "eval.problems=2", "eval.k=2", "eval.max_new_tokens=16",
            "save_trees=0", "progress=false")
        dev[mode] = next(r for r in run(cfg, tmp_path / mode) if r["kind"] == "train")
    print({m: (r["ratio_dev"], r.get("sampler_ratio_dev")) for m, r in dev.items()})
    assert dev["recompute"]["ratio_dev"] < 1e-6 and dev["sampler"]["ratio_dev"] > 5e-4
    assert dev["recompute"]["sampler_ratio_dev"] == pytest.approx(dev["sampler"]["ratio_dev"], rel=0.3)


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_ppo_scores_old_logp_entropy_and_a_shared_critics_values_in_one_policy_pass(raw, critic):
    """Before the update PPO runs the policy once per micro batch: pi_old, entropy and (with a
    shared backbone) the critic's values come off that one pass (issue 14: it ran twice), and
    the values are the ones a pass of their own gives."""
    task, policy, weights = raw
    policy.model.load_state_dict(weights)
    results = Sampling(n=2, max_new_tokens=24, seed=3).search(task.problems("train", limit=6, seed=0), policy, task,
                                                              Budget())
    trainer = PPO(lr=1e-4, minibatch_size=4, advantage="gae", kl_coef=0.0, critic=critic)
    trainer.setup(policy, task)
    with torch.no_grad():  # a zero-initialised head would make any two value passes agree
        trainer.value_head.linear.weight.normal_(generator=torch.Generator().manual_seed(0))
    trainer.critic_active = True
    rollouts, _ = build_rollouts(policy, results)
    assert len(rollouts) > 4  # at least two micro batches
    passes = []
    hook = policy.model.register_forward_hook(lambda *_: passes.append(1))
    try:
        trainer.score_rollouts(rollouts)
    finally:
        hook.remove()
    assert len(passes) == -(-len(rollouts) // 4)  # one per micro batch of 4
    backbone = trainer.critic_model if critic == "separate" else policy.model
    for r in rollouts[:3]:
        batch = make_batch([r], trainer.pad_id, ())
        with torch.no_grad():
            hidden = backbone(**batch.inputs, output_hidden_states=True).hidden_states[-1][:, :-1]
            own = unpad(trainer.value_head(hidden), [r])[0]
        assert r.old_values == pytest.approx(own, abs=1e-5) and any(abs(v) > 1e-3 for v in own)


def sampled_and_solved(task, policy):
    """6 problems x 4 samples of the untrained model (which solves nothing), and a seventh
    problem with a reference solution and a wrong answer: a group with an advantage, so that
    an update moves the weights."""
    problems = task.problems("train", limit=7, seed=0)
    results = Sampling(n=4, max_new_tokens=24, seed=1).search(problems[:6], policy, task, Budget())
    state = start(problems[6:], task, Budget(), "sampling")[0]
    steps = task.split_steps(task.reference_traces(problems[6])[0])
    for trace in (steps, steps[:1] + ["answer: 1 + 1\n"]):
        grow_trace(state, policy, task, trace)
    return [*results, SearchResult(problems[6], state.tree, tokens=0, calls=0, wall_time=0.0)]


@pytest.mark.parametrize("mode", ["recompute", "sampler"])
def test_a_one_step_update_reads_pi_old_off_its_own_forward(raw, monkeypatch, mode):
    """One epoch, one minibatch (TRL's GRPO default): pi_old is the trained model itself, so
    the update's forward stands in for the scoring pass (issue 14). The step, its entropy, KL
    and the sampler's deviation are what the scoring pass gives; the policy runs once per
    micro batch, not twice."""
    task, _, weights = raw
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer, sample_dtype="bfloat16")  # the sampler ~1e-3 off: a deviation to carry
    results = sampled_and_solved(task, policy)
    runs = {}
    for one_step in (True, False):
        model.load_state_dict(weights)
        trainer = GRPO(lr=1e-3, minibatch_size=64, micro_batch_size=8, kl_coef=0.04, old_logp=mode)
        trainer.setup(policy, task)
        monkeypatch.setattr(trainer, "one_step_update", lambda rollouts, on=one_step: on)
        passes = []
        hook = model.register_forward_hook(lambda *_: passes.append(1))
        try:
            stats = trainer.step(1, results)
        finally:
            hook.remove()
        runs[one_step] = stats, len(passes), copy.deepcopy(model.state_dict())
    (fast, fast_passes, fast_w), (slow, slow_passes, slow_w) = runs[True], runs[False]
    assert fast["pg_updates"] == slow["pg_updates"] == 1 and fast["pg_rollouts"] == 26
    assert (fast_passes, slow_passes) == (4, 8)  # 26 rollouts in micro batches of 8: update only vs scoring + update
    for key in ("entropy", "kl", "pg_loss", "ratio_dev", "grad_norm") + (("sampler_ratio_dev",) if mode == "recompute"
                                                                         else ()):
        assert fast[key] == pytest.approx(slow[key], rel=1e-4, abs=1e-7), key
    assert fast["ratio_dev"] < 1e-6 if mode == "recompute" else fast["ratio_dev"] > 5e-4  # grown steps log -1.0
    # the scoring pass's pi_old differs from the update's own logp by float noise (ratio 1 +- 1e-7), which Adam's
    # first step (~ lr * sign(g)) lifts on near-zero gradients: measured 3e-6 of a 1e-3 step
    assert max(float((fast_w[k] - slow_w[k]).abs().max()) for k in fast_w) < 2e-5
    assert max(float((fast_w[k] - weights[k]).abs().max()) for k in fast_w) > 1e-4  # the step moved the weights


def test_only_an_update_of_one_step_without_a_critic_skips_the_scoring_pass():
    rollouts = list(range(8))
    assert GRPO(minibatch_size=8).one_step_update(rollouts)
    assert not GRPO(minibatch_size=4).one_step_update(rollouts)  # a second step would see a moved policy
    assert not GRPO(minibatch_size=8, epochs=2).one_step_update(rollouts)
    gae = PPO(minibatch_size=8, advantage="gae")
    gae.critic_active = True  # GAE reads old values and KL-in-reward before the update
    assert not gae.one_step_update(rollouts)


def test_target_kl_stops_the_update_before_a_step_past_its_limit(raw):
    """Minibatches of 2 traces at a large learning rate: KL(pi_old || pi) (k3) grows step by
    step. With target_kl the update stops before the first minibatch over 1.5 x target_kl, so
    every step it took measured at most that; a limit never reached changes nothing."""
    task, policy, weights = raw
    policy.model.load_state_dict(weights)  # the untrained model samples (earlier tests train the shared one)
    results = sampled_and_solved(task, policy)

    def update(target_kl):
        policy.model.load_state_dict(weights)
        trainer = GRPO(lr=3e-2, minibatch_size=2, kl_coef=0.0, target_kl=target_kl)
        trainer.setup(policy, task)
        return trainer.step(1, results), copy.deepcopy(policy.model.state_dict())

    (free, free_w), (loose, loose_w), (tight, _) = update(None), update(1e6), update(0.02)
    print({k: (s["pg_updates"], round(s["approx_kl_k3"], 4), s["kl_stopped"]) for k, s in
           (("free", free), ("loose", loose), ("tight", tight))})
    assert free["pg_updates"] == loose["pg_updates"] == 13 and free["kl_stopped"] == loose["kl_stopped"] == 0.0
    assert all(torch.equal(free_w[k], loose_w[k]) for k in free_w)
    assert free["approx_kl_k3"] > 1.5 * 0.02  # without a limit the update drifts past it
    assert tight["kl_stopped"] == 1.0 and 1 <= tight["pg_updates"] < 13
    assert tight["approx_kl_k3"] <= 1.5 * 0.02
