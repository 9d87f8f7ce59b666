"""XoT, "Everything of Thoughts" (Ding et al., 2023): a guide network explores, the
language model answers.

For every problem the guide (`search.guide`: a policy-value network trained once per
task by MCTS self-play on the task's formal state space, then cached) runs an MCTS from
the problem's start state and proposes `m` thought trajectories. Then `revisions` rounds
check every new trajectory step by step, either with the LM's own judgement (`check: lm`,
by the configured `evaluator`, ToT's value prompt `self_eval` unless another is given, its
tokens charged to the budget) or
with the task's exact solver (`check: oracle`: can the target still be reached from this
state; the strategy is then named `xot_oracle`). A trajectory with a wrong step is
replaced from its first wrong state: the guide searches again from the state before that
step with the wrong action banned, and the steps before it are kept. Finally the
trajectories, rendered in the task's own step format, go into the prompt as hints and the
LM writes `n` traces per problem, all problems in ONE batched `sample` call through
`search.expand.expand` (so budgets and verifier labels work as for every strategy; `batch`
traces per problem per call, and `n: null` keeps drawing until the budget is spent, as
sampling does, so XoT stands at equal LM tokens in a study); the answer is their majority
vote. With `hint_at: trace` the LM instead continues the best
checked trajectory's steps (it writes only what follows them, typically the answer), for
a policy that never learned to read hints before the question.

In the tree, the guide's steps hang under the root as chains of nodes marked
`finish_reason: "guide"` and `off_context` (0 tokens; `prior` and `visits` are the guide's,
`value` the check's verdict, `iteration` the revision round); they are never terminal, so
trainers and metrics see only the LM's traces: the root's other children, or (`hint_at:
trace`) the LM's continuations below a guide chain, whose traces then begin with the
guide's steps (PPO/GRPO read those as context, loss-masked, as `training.rollouts` says). The tree meta
`guide` holds the hints and the guide's cost (simulations, network states and FLOPs), and
`guide_training` what training it once cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from policies import Policy
from search.budget import Budget, require_budget
from search.evaluators import Evaluator, SelfEvaluator
from search.expand import ProblemState, Sampler, draw_traces, finish, majority_vote, start
from search.guide import Cost, GuideConfig, GuideSearch, load_or_train
from search.result import SearchResult
from tasks import Problem, Task

CHECKS = ("lm", "oracle")
HINT_AT = ("prompt", "trace")
GUIDE = "guide"  # finish_reason of the guide's nodes


@dataclass
class Hint:
    """One guide trajectory: its actions, the states they pass through (states[0] is the
    start) and the tree node of each rendered step (the answer step last, when solved)."""

    actions: list[int]
    states: list[Any]
    nodes: list[int] = field(default_factory=list)
    checked: bool = False


def state_space_of(task: Task) -> Any:
    make = getattr(task, "state_space", None)
    if make is None:
        raise ValueError(f"search=xot needs a task with a formal state space (a state_space() method); "
                         f"task {task.name!r} has none")
    return make()


class XoT:
    def __init__(self, m: int = 2, n: int | None = 8, simulations: int = 64, revisions: int = 1, check: str = "lm",
                 reject_below: float = 0.5, c_puct: float = 1.5, evaluator: Evaluator | None = None,
                 hint_template: str = "{question}\n{trajectory}\n", max_new_tokens: int = 160,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, guide: dict | None = None,
                 progress: bool = False, hint_at: str = "prompt", batch: int = 8):
        if check not in CHECKS or hint_at not in HINT_AT:
            raise ValueError(f"search.check must be one of {CHECKS} and search.hint_at one of {HINT_AT}, "
                             f"got {check!r}, {hint_at!r}")
        if min(m, simulations, n or 1, batch) < 1 or revisions < 0:
            raise ValueError(f"search.m, search.n, search.simulations, search.batch must be >= 1 and search.revisions "
                             f">= 0, got m={m}, n={n}, batch={batch}, simulations={simulations}, revisions={revisions}")
        try:
            self.guide_config = GuideConfig(**dict(guide or {}))
        except TypeError as e:
            raise ValueError(f"search.guide: {e}") from None
        self.name = "xot_oracle" if check == "oracle" else "xot"
        self.m, self.n, self.simulations, self.revisions = m, n, simulations, revisions
        self.batch = batch
        self.check, self.reject_below, self.c_puct = check, reject_below, c_puct
        # the LM check's judge (None: ToT's value prompt with its defaults, as search/evaluator=self_eval);
        # the oracle check needs none
        self.evaluator = (evaluator if evaluator is not None else SelfEvaluator()) if check == "lm" else None
        self.hint_template, self.hint_at, self.seed, self.progress = hint_template, hint_at, seed, progress
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, max_depth=1)

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        started = time.perf_counter()
        if self.n is None:
            require_budget(budget, "n")
        space = state_space_of(task)
        cfg = self.guide_config
        net, record = load_or_train(space, task.problems("train", limit=cfg.problems, seed=cfg.seed), cfg,
                                    self.progress)
        guide = GuideSearch(space, net, self.c_puct)
        states = start(problems, task, budget, self.name)
        costs = [Cost() for _ in states]
        hints = self.propose(guide, [space.initial(s.problem) for s in states], costs, [None] * len(states))
        for s, hs in zip(states, hints):
            s.scratch.update(hints=hs, banned={}, revised=0)
            for h in hs:
                self.attach(s, h, space, 0)
        revised_rounds = 0
        for round_ in range(1, self.revisions + 1):
            if not self.revise(states, guide, space, costs, policy, task, round_):
                break
            revised_rounds = round_
        self.write(states, space, policy, task, revised_rounds + 1)
        answers = []
        for s, cost in zip(states, costs):
            answers.append(majority_vote([s.tree[c]["answer"] for c in s.tree.terminals()]))
            final = [space.trace(h.states[-1]) for h in s.scratch["hints"]]
            s.tree.graph.graph["meta"].update(
                rounds=revised_rounds + 1,
                guide={"check": self.check, **cost.as_dict(), "revised": s.scratch["revised"], "hints": final,
                       "hints_solved": sum(space.is_solved(h.states[-1]) for h in s.scratch["hints"])},
                guide_training={"folder": record["folder"], "cached": record["cached"], **{
                    k: v for k, v in record["training"].items() if k != "rounds"}})
        return finish(states, answers, started)

    def write(self, states: list[ProblemState], space: Any, policy: Policy, task: Task, iteration: int) -> None:
        """The LM's traces: `n` per problem, `batch` at a time, or with `n: null` batches until
        the problem's budget is spent, every problem of a round in one `sample` call; under the
        hint prompt or after the best checked trajectory."""
        anchors = [s.tree.root if self.hint_at == "prompt" else self.continue_from(s, space) for s in states]
        prompts = [self.hint_prompt(s, space) if self.hint_at == "prompt" else None for s in states]
        draw_traces(states, anchors, self.n, self.batch, policy, task, self.sampler, seed=self.seed,
                    iteration=iteration, prompts=prompts)

    # ---- the guide's part ---------------------------------------------------------------

    def propose(self, guide: GuideSearch, roots: list[Any], costs: list[Cost],
                banned: list[set[int] | None]) -> list[list[Hint]]:
        """One batched MCTS over every root; up to `m` trajectories from each."""
        nodes = [guide.node(r) for r in roots]
        guide.run(nodes, self.simulations, costs, [b or set() for b in banned])
        out = []
        for root, node, cost in zip(roots, nodes, costs):
            hints = []
            for actions in guide.trajectories(node, self.m, cost):
                walk = [root]
                for a in actions:
                    walk.append(guide.space.apply(walk[-1], a))
                hints.append(Hint(actions, walk))
            out.append(hints)
        return out

    def attach(self, state: ProblemState, hint: Hint, space: Any, round_: int) -> None:
        """Add the hint's rendered steps to the tree, reusing nodes of a shared prefix."""
        tree, node = state.tree, state.tree.root
        steps = list(hint.states[-1].steps[: len(hint.actions)])
        if space.is_solved(hint.states[-1]):
            steps.append(space.answer_step(hint.states[-1]))
        hint.nodes = []
        for text in steps:
            same = [c for c in tree.children(node) if tree[c]["finish_reason"] == GUIDE and tree[c]["text"] == text]
            node = same[0] if same else tree.add_child(node, text, finish_reason=GUIDE, iteration=round_,
                                                         off_context=True)  # written by the guide, not sampled
            hint.nodes.append(node)

    def revise(self, states: list[ProblemState], guide: GuideSearch, space: Any, costs: list[Cost],
               policy: Policy, task: Task, round_: int) -> bool:
        """Check every unchecked hint; re-search each wrong one from its first wrong state.
        Returns whether any hint was replaced."""
        wrong = self.first_wrong(states, space, policy, task, round_)
        jobs = []  # (state index, hint index, kept actions, banned actions)
        for i, k, step in wrong:
            s = states[i]
            hint = s.scratch["hints"][k]
            j = min(step, len(hint.actions)) - 1  # the action that led into (or ended at) the wrong state
            while j >= 0:
                key = tuple(hint.actions[:j])
                banned = s.scratch["banned"].setdefault(key, set())
                banned.add(hint.actions[j])
                if set(space.actions(hint.states[j])) - banned:
                    jobs.append((i, k, j, banned))
                    break
                j -= 1
        if not jobs:
            return False
        roots = [states[i].scratch["hints"][k].states[j] for i, k, j, _ in jobs]
        found = self.propose(guide, roots, [costs[i] for i, *_ in jobs], [b for *_, b in jobs])
        for (i, k, j, _), continuations in zip(jobs, found):
            s = states[i]
            old = s.scratch["hints"][k]
            if not continuations:
                continue
            tail = continuations[0]
            s.scratch["hints"][k] = Hint(old.actions[:j] + tail.actions, old.states[: j + 1] + tail.states[1:])
            self.attach(s, s.scratch["hints"][k], space, round_)
            s.scratch["revised"] += 1
        return True

    def first_wrong(self, states: list[ProblemState], space: Any, policy: Policy, task: Task,
                    round_: int) -> list[tuple[int, int, int]]:
        """(state index, hint index, 1-based step) of the first wrong step of every unchecked
        hint that has one; the LM's judgements of all problems share one batched call."""
        todo = [(i, k, h) for i, s in enumerate(states) for k, h in enumerate(s.scratch["hints"]) if not h.checked]
        if self.check == "lm":
            items = list(dict.fromkeys((i, n) for i, _, h in todo for n in h.nodes
                                       if states[i].tree[n]["value"] is None))
            values = self.evaluator.evaluate([(states[i], n) for i, n in items], policy, task, seed=self.seed * 100_003 + 50_000 + round_)
            for (i, n), v in zip(items, values):
                states[i].tree[n]["value"] = v
        out = []
        for i, k, h in todo:
            h.checked = True
            tree = states[i].tree
            for step, n in enumerate(h.nodes, 1):
                if self.check == "oracle" and tree[n]["value"] is None:
                    tree[n]["value"] = float(space.solvable(h.states[min(step, len(h.actions))]))
                if tree[n]["value"] is not None and tree[n]["value"] < self.reject_below:
                    out.append((i, k, step))
                    break
        return out

    def continue_from(self, state: ProblemState, space: Any) -> int:
        """`hint_at: trace`: the last step node (before any answer step) of the first hint
        whose every step passed the check, else of the first hint; the LM writes the rest."""
        tree, hints = state.tree, state.scratch["hints"]
        if not hints:
            return tree.root
        passed = [h for h in hints if all((tree[n]["value"] is None or tree[n]["value"] >= self.reject_below)
                                          for n in h.nodes)]
        hint = (passed or hints)[0]
        return hint.nodes[len(hint.actions) - 1] if hint.actions else tree.root

    def hint_prompt(self, state: ProblemState, space: Any) -> str:
        question = state.problem.question
        hints = "".join(self.hint_template.format(question=question, trajectory=space.trace(h.states[-1]))
                        for h in state.scratch["hints"])
        return hints + state.prompt
