"""XoT: the Countdown / Game of 24 state space, the guide's MCTS and its cache, revisions from
the first wrong state, and `search=xot` end to end with a real tiny Llama, by config alone."""

import os
import random

import pytest
import torch
from hydra.utils import instantiate

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchTree
from search.evaluators import SelfEvaluator, ValueModelEvaluator
from search.expand import start
from search.guide import Cost, GuideConfig, GuideSearch, load_or_train
from search.xot import GUIDE, Hint, XoT
from tasks import Arith, Countdown, Game24
from tasks.config import build_task
from training.ppo import PPO
from training.rollouts import build_rollouts, context_tokens

from composing import composed

TINY_GUIDE = dict(problems=48, rounds=2, games=48, simulations=8, hidden=32, epochs=2)


def game24():
    return Game24(path=None, train_size=60, test_size=20)


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("guides"))


@pytest.fixture(scope="module")
def guide(guide_dir):
    task = game24()
    config = GuideConfig(**TINY_GUIDE, cache_dir=guide_dir)
    net, _ = load_or_train(task.state_space(), task.problems("train", limit=config.problems), config)
    return task, net


def walk(space, state, rng):
    while not space.is_terminal(state):
        state = space.apply(state, rng.choice(space.actions(state)))
    return state


def first_solution(space, state):
    """The first solved terminal state depth-first, or None."""
    if space.is_terminal(state):
        return state if space.is_solved(state) else None
    return next(filter(None, (first_solution(space, space.apply(state, a)) for a in space.actions(state))), None)


@pytest.mark.parametrize("task", [Countdown(max_numbers=4, train_size=50, test_size=10), game24()],
                         ids=["countdown", "game24"])
def test_rendered_hints_parse_back_as_valid_steps(task):
    space, rng, solved = task.state_space(), random.Random(0), 0
    for problem in task.problems("train", limit=30):
        for end in [first_solution(space, space.initial(problem))] + [walk(space, space.initial(problem), rng)
                                                                       for _ in range(4)]:
            for k, step in enumerate(end.steps):
                assert task.step_reward(problem, "".join(end.steps[:k]), step) == 1.0, step
            assert task.reward(problem, space.trace(end)) == float(space.is_solved(end)) == space.reward(end)
            if space.is_solved(end):
                solved += 1
                assert task.step_reward(problem, "".join(end.steps), space.answer_step(end)) == 1.0
    assert solved >= 30


def test_the_state_space_reaches_exactly_what_the_solver_does():
    task = game24()
    space = task.state_space()

    for problem in task.problems("test", limit=5) + [task.make_problem("x", [1, 1, 1, 1], 24)]:
        found = first_solution(space, space.initial(problem)) is not None
        assert found == space.solvable(space.initial(problem)) == bool(task.solve(problem.meta["numbers"], 24))


def test_guide_mcts_solves_small_solvable_states(guide):
    task, net = guide
    space = task.state_space()
    states = []
    for problem in task.problems("test", limit=8):  # three numbers left, after a first step that keeps 24 reachable
        start_, first = space.initial(problem), first_solution(space, space.initial(problem)).steps[0]
        states += [s for s in (space.apply(start_, a) for a in space.actions(start_)) if s.steps[0] == first]
    search = GuideSearch(space, net)
    roots, costs = [search.node(s) for s in states], [Cost() for _ in states]
    search.run(roots, 96, costs)
    assert len(states) == 8
    for root, cost in zip(roots, costs):
        best = search.trajectories(root, 1, cost)[0]
        end = root.state
        for a in best:
            end = space.apply(end, a)
        assert space.reward(end) == 1.0, space.trace(end)
        assert cost.simulations == 96 and 0 < cost.states <= 97 and cost.flops == cost.states * net.flops_per_state


def test_guide_is_trained_once_cached_and_reused(guide_dir):
    task = game24()
    space, problems = task.state_space(), task.problems("train", limit=TINY_GUIDE["problems"])
    first, record = load_or_train(space, problems, GuideConfig(**TINY_GUIDE, cache_dir=guide_dir))
    again, record2 = load_or_train(space, problems, GuideConfig(**TINY_GUIDE, cache_dir=guide_dir))
    assert record2["cached"] and record2["folder"] == record["folder"]
    assert record2["training"]["simulations"] > 0 and record2["training"]["rounds"][-1]["positions"] > 0
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    other = load_or_train(space, problems, GuideConfig(**{**TINY_GUIDE, "rounds": 1}, cache_dir=guide_dir))[1]
    assert not other["cached"] and other["folder"] != record["folder"]
    assert not [p for p in os.listdir(guide_dir) if p.startswith(".building")]


def xot_on(task, problem, hint_actions, guide_dir, **kw):
    """An XoT whose first hint for `problem` is the given action sequence."""
    xot = XoT(m=1, n=1, simulations=96, guide={**TINY_GUIDE, "cache_dir": guide_dir}, **kw)
    space = task.state_space()
    states = start([problem], task, Budget(), xot.name)
    walk_ = [space.initial(problem)]
    for a in hint_actions:
        walk_.append(space.apply(walk_[-1], a))
    hint = Hint(list(hint_actions), walk_)
    states[0].scratch.update(hints=[hint], banned={}, revised=0)
    xot.attach(states[0], hint, space, 0)
    return xot, space, states, hint


def dead_second_step(space, problem):
    """Actions (a1, a2, a3): after a1 the target is reachable, after a2 no longer."""
    s0 = space.initial(problem)
    for a1 in space.actions(s0):
        s1 = space.apply(s0, a1)
        for a2 in space.actions(s1) if space.solvable(s1) else []:
            s2 = space.apply(s1, a2)
            if not space.solvable(s2):
                return [a1, a2, space.actions(s2)[0]]
    raise AssertionError("no dead second step")


@pytest.mark.parametrize("check", ["oracle", "lm"])
def test_a_revision_replaces_a_wrong_trajectory_from_its_first_wrong_state(check, guide, guide_dir):
    task, net = guide
    problem = task.make_problem("p", [4, 6, 1, 1], 24)
    space = task.state_space()
    wrong = dead_second_step(space, problem)
    kw = {}
    if check == "lm":  # an LM judge that rejects exactly the wrong second step
        bad = space.apply(space.apply(space.initial(problem), wrong[0]), wrong[1]).steps[1]

        class Judge:
            def value(self, texts):
                return [0.0 if bad in t else 1.0 for t in texts]

        kw = {"evaluator": ValueModelEvaluator(Judge())}
    xot, space, states, old = xot_on(task, problem, wrong, guide_dir, check=check, **kw)
    old_nodes = list(old.nodes)
    assert xot.revise(states, GuideSearch(space, net), space, [Cost()], None, task, 1)
    new = states[0].scratch["hints"][0]
    assert new.actions[0] == wrong[0] and new.actions[1] != wrong[1]  # kept before, replaced from the wrong state
    assert space.reward(new.states[-1]) == 1.0
    tree = states[0].tree
    assert new.nodes[0] == old_nodes[0]  # the shared first step is one node; the revision branches below it
    assert tree.parent(new.nodes[1]) == old_nodes[0] and new.nodes[1] not in old_nodes
    assert tree[new.nodes[1]]["iteration"] == 1 and tree[old_nodes[1]]["value"] == 0.0
    assert all(tree[n]["finish_reason"] == GUIDE and not tree[n]["terminal"] for n in new.nodes + old_nodes)
    assert states[0].scratch["revised"] == 1


def test_a_task_without_a_state_space_gets_a_one_line_error(guide_dir):
    task = Arith(train_size=4, test_size=2)
    with pytest.raises(ValueError) as err:
        XoT(guide={**TINY_GUIDE, "cache_dir": guide_dir}).search(task.problems("test"), None, task, Budget())
    assert "search=xot" in str(err.value) and "state_space" in str(err.value) and "\n" not in str(err.value)


def test_the_lm_check_defaults_to_self_eval_and_the_oracle_takes_no_evaluator():
    assert type(XoT().evaluator) is SelfEvaluator
    assert vars(XoT().evaluator) == vars(instantiate(composed("search=xot").search.evaluator))
    assert XoT(check="oracle", evaluator=SelfEvaluator(votes=1)).evaluator is None


class Counting:
    """A real policy that records every `sample` call."""

    def __init__(self, policy):
        self.policy, self.calls = policy, []

    def sample(self, prompts, **kw):
        self.calls.append(prompts)
        return self.policy.sample(prompts, **kw)

    def __getattr__(self, name):
        return getattr(self.policy, name)


@pytest.mark.parametrize("variant", ["xot", "xot_oracle"])
def test_xot_runs_by_config_with_a_real_tiny_llama(variant, guide_dir):
    lm_check = ["search.evaluator.votes=1"] if variant == "xot" else []  # xot_oracle has no evaluator
    task, strategy, results, calls = run_small(f"search={variant}", *lm_check, guide_dir=guide_dir)
    problems = [r.problem for r in results]
    assert strategy.name == variant and (strategy.evaluator is None) == (variant == "xot_oracle")
    assert len(calls) == (1 if variant == "xot_oracle" else 2)  # (the LM check), then ONE call for all traces
    assert len(calls[-1]) == len(problems)
    for prompt, problem in zip(calls[-1], problems):  # the hints come first, in the task's step format
        assert prompt.startswith(problem.question + "\n") and "(left: " in prompt
        assert prompt.endswith(task.prompt(problem))
    for r in results:
        tree, meta = r.tree, r.tree.graph.graph["meta"]
        guide_nodes = [n for n in tree.graph.nodes if tree[n]["finish_reason"] == GUIDE]
        lm = [c for c in tree.children(0) if tree[c]["finish_reason"] != GUIDE]
        assert guide_nodes and all(tree[n]["tokens"] == 0 and not tree[n]["terminal"] for n in guide_nodes)
        assert len(lm) == 2 and all(tree[c]["terminal"] and tree[c]["reward"] is not None for c in lm)
        assert [t.node_ids[-1] for t in r.traces()] == lm
        assert r.tokens <= 400 and (r.tokens == tree.tokens if variant == "xot_oracle" else r.tokens > tree.tokens)
        assert meta["guide"]["check"] == ("oracle" if variant == "xot_oracle" else "lm")
        assert meta["guide"]["simulations"] >= 48 and meta["guide"]["network_flops"] > 0
        assert meta["guide_training"]["simulations"] > 0 and 1 <= len(meta["guide"]["hints"]) <= 2
        assert SearchTree.loads(tree.dumps()).dumps() == tree.dumps()


def test_hint_at_trace_lets_the_lm_continue_the_checked_trajectory(guide_dir):
    task, strategy, results, calls = run_small("search=xot_oracle", "search.hint_at=trace", guide_dir=guide_dir)
    assert len(calls) == 1 and len(calls[0]) == len(results)
    for r, prompt in zip(results, calls[0]):
        tree, traces = r.tree, r.traces()
        assert len(traces) == 2 and r.tokens == tree.tokens
        parent = tree.parent(traces[0].node_ids[-1])
        assert tree[parent]["finish_reason"] == GUIDE and prompt == task.prompt(r.problem) + tree.prefix(parent)
        for t in traces:  # the guide's steps, then the LM's; the verifier judged the whole trace
            assert t.steps[:-1] == [tree[n]["text"] for n in tree.path(parent)[1:]]
            assert t.reward == task.reward(r.problem, t.text)


def test_ppo_trains_the_lms_steps_after_the_guide_and_reads_the_guides_as_context(guide_dir):
    task, _, results, _ = run_small("search=xot_oracle", "search.hint_at=trace", guide_dir=guide_dir)
    policy = HFPolicy(*build_tiny_model("1m", seed=0))
    rollouts, dropped = build_rollouts(policy, results)  # every trace was dropped before: guide steps have no ids
    assert sum(dropped.values()) == 0 and len(rollouts) == sum(len(r.traces()) for r in results)
    masked = context_tokens(rollouts)
    for r in rollouts:
        k = sum(r.result.tree[n]["finish_reason"] == GUIDE for n in r.trace.node_ids)
        cut = r.step_ends[k - 1]
        context = policy.encode_prompt(r.trace.prompt + "".join(r.trace.steps[:k]))
        assert 0 < k < len(r.trace.steps) and r.prompt_ids + r.response_ids[:cut] == context
        assert set(r.loss_mask[:cut]) == {0.0} and set(r.loss_mask[cut:]) == {1.0}
    trainer = PPO(lr=1e-4, minibatch_size=8)
    trainer.setup(policy, task)
    stats = trainer.step(1, results)
    assert stats["traces_dropped"] == 0 and stats["off_context_tokens"] == masked > 0
    assert stats["tree_advantage"] == 1.0  # advantage=auto: the guide's chain makes the tree deep, as ToT's do
    assert stats["pg_tokens"] == sum(len(r.response_ids) for r in rollouts) - masked > 0
    guide_node = rollouts[0].trace.node_ids[0]
    results[0].tree[guide_node]["off_context"] = False  # text without ids that claims to be sampled: not trainable
    assert build_rollouts(policy, results[:1])[1]["retokenise"] == len(results[0].traces())


def test_traces_written_under_the_hint_prompt_are_not_trained_as_if_sampled_under_the_plain_one(guide_dir):
    task, _, results, _ = run_small("search=xot_oracle", "search.hint_at=prompt", guide_dir=guide_dir)
    policy = HFPolicy(*build_tiny_model("1m", seed=0))
    trainer = PPO(lr=1e-4, minibatch_size=8)
    trainer.setup(policy, task)
    before = [p.detach().clone() for p in policy.model.parameters()]
    stats = trainer.step(1, results)
    traces = sum(len(r.traces()) for r in results)
    assert stats["traces_dropped"] == stats["traces_dropped_context_only"] == traces and stats["pg_rollouts"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))  # no optimizer step on nothing


def test_n_null_keeps_writing_after_the_guide_until_the_budget_is_spent(guide_dir):
    task, strategy, results, calls = run_small("+equal_spend=xot", "search.max_new_tokens=32", guide_dir=guide_dir)
    assert strategy.n is None and len(calls) >= 3  # batches of 8 per problem, every problem in each call
    for r in results:
        lm = [t for t in r.traces() if r.tree[r.tree.parent(t.node_ids[-1])]["finish_reason"] == GUIDE]
        assert len(lm) == len(r.traces()) > 8
        assert 400 - 32 < r.tokens <= 400 and r.stop_reason == "budget"


def test_n_null_needs_a_budget():
    with pytest.raises(ValueError, match="budget"):
        XoT(n=None, batch=4, check="oracle").search([], None, game24(), Budget())


def run_small(*overrides, guide_dir):
    n = [] if any(o.startswith(("search.n=", "+equal_spend=")) for o in overrides) else ["search.n=2"]
    mnt = [] if any(o.startswith("search.max_new_tokens=") for o in overrides) else ["search.max_new_tokens=48"]
    cfg = composed(*overrides, "task=game24", "task.path=null", "task.train_size=60", "task.test_size=20", *n, *mnt,
                   *[f"search.guide.{k}={v}" for k, v in TINY_GUIDE.items()], f"search.guide.cache_dir={guide_dir}")
    task, strategy = build_task(cfg.task), instantiate(cfg.search)
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = Counting(HFPolicy(model, tokenizer))
    results = strategy.search(task.problems("test", limit=3), policy, task, Budget(tokens_per_problem=400))
    return task, strategy, results, policy.calls
