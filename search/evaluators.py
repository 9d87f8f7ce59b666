"""Node evaluators: how a strategy scores a partial trace, all batched across problems.

An evaluator gets `(state, node)` pairs from every tree of the round and returns one value
in [0, 1] per pair, spending policy tokens (charged to each problem's budget) when it
needs the policy. What an evaluator may know is part of its definition: `terminal` and
`rollout` use the verifier on finished traces only (the ExIt / rStar setting), while
`self_eval` and `value_model` never touch the gold answer.

Strategies take an evaluator object, never a name: Hydra builds it from the
`search/evaluator` config group (`conf/search/evaluator/<name>.yaml`, whose knobs are each
class's own code defaults), and code and tests construct one directly.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Protocol

from policies import Policy
from search.expand import ProblemState, Sampler
from tasks import Task

Item = tuple[ProblemState, int]


class Evaluator(Protocol):
    """Scores `(state, node)` items of every tree of a round in one batch. An item whose
    problem's budget could not pay for its evaluation gets None: the search then uses
    `neutral` as its value and records no `score` for it (so `value_auc` rates only real
    judgements, and `log_unscored` counts the rest)."""

    name: str
    neutral: float

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float | None]:
        ...


class TerminalEvaluator:
    """The verifier's reward on finished traces; `neutral` on unfinished ones."""

    name = "terminal"

    def __init__(self, neutral: float = 0.5):
        self.neutral = neutral

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        return [float(s.tree[n]["reward"]) if s.tree[n]["terminal"] else self.neutral for s, n in items]


def _caps(items: list[Item], per_item: int, max_new_tokens: int) -> list[int]:
    """Each item's token cap when it issues `per_item` requests (0: not served). A
    problem whose budget cannot pay for all its items serves its first ones."""
    count = Counter(id(s) for s, _ in items)
    allowance: dict[int, tuple[int, int]] = {}  # id(state) -> (items served, cap)
    for s, _ in items:
        if id(s) in allowance:
            continue
        sent, _ = (0, 0) if s.meter.exhausted else s.meter.allot(max_new_tokens, count[id(s)] * per_item)
        served = min(count[id(s)], max(1, sent // per_item)) if sent else 0
        left = s.meter.tokens_left
        cap = max_new_tokens if left is None or not served else min(max_new_tokens, left // (served * per_item))
        allowance[id(s)] = (served, cap) if cap > 0 else (0, 0)
    out, seen = [], Counter()
    for s, _ in items:
        served, cap = allowance[id(s)]
        out.append(cap if seen[id(s)] < served else 0)
        seen[id(s)] += 1
    return out


def _sample_charged(items: list[Item], prompts: list[str], policy: Policy, n: int, sampler: Sampler,
                    seed: int, stop: list[str] | None) -> list[list | None]:
    """One batched call for the items whose problem still has budget; charges each."""
    caps = _caps(items, n, sampler.max_new_tokens)
    live = [i for i, cap in enumerate(caps) if cap > 0]
    out: list[list | None] = [None] * len(items)
    if not live:
        return out
    limits = [caps[i] for i in live]
    groups = policy.sample([prompts[i] for i in live], n=n, max_new_tokens=max(limits), temperature=sampler.temperature,
                           top_p=sampler.top_p, stop=stop, seed=seed, max_new_tokens_per_prompt=limits)
    charged: dict[int, ProblemState] = {}
    for i, group in zip(live, groups):
        state = items[i][0]
        state.meter.charge(sum(x.num_tokens for x in group))
        charged[id(state)] = state
        out[i] = group
    for state in charged.values():
        state.meter.charge(0, calls=1)
    return out


class StepCheckEvaluator:
    """The task's own step checker as a heuristic, at no token cost: a finished trace gets
    the verifier's reward; an open state gets `task.step_reward` of its last step (1.0
    when every step so far is legal, 0.0 once one is not; `neutral` when the task checks
    no steps). It reads the problem statement (numbers, target), never a gold answer, and
    gives a signal on policies too small to judge their own states (where `self_eval`
    parses nothing and every value is its neutral 0.5)."""

    name = "step_check"

    def __init__(self, neutral: float = 0.5):
        self.neutral = neutral

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        if task.step_reward_reads_gold:
            raise ValueError(f"search/evaluator=step_check: task {task.name}'s step_reward compares steps with the gold "
                             "solution, which no search may see; use search/evaluator=rollout or self_eval")
        out = []
        for s, n in items:
            d = s.tree[n]
            if d["terminal"]:
                out.append(float(d["reward"]))
                continue
            parent = s.tree.parent(n)
            value = task.step_reward(s.problem, s.tree.prefix(parent) if parent is not None else "", d["text"])
            out.append(self.neutral if value is None else float(value))
        return out


class RolloutEvaluator:
    """Monte Carlo value: the mean verifier reward of `n` policy completions from the node."""

    name = "rollout"

    def __init__(self, n: int = 4, max_new_tokens: int = 128, temperature: float = 1.0, neutral: float = 0.5):
        self.n, self.neutral = n, neutral
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature)

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        values: list[float | None] = [float(s.tree[n]["reward"]) if s.tree[n]["terminal"] else None for s, n in items]
        open_items = [it for it, v in zip(items, values) if v is None]
        groups = _sample_charged(open_items, [s.text(n) for s, n in open_items], policy, self.n, self.sampler, seed, None)
        filled = iter(
            None if g is None else sum(task.reward(s.problem, s.tree.prefix(n) + x.text) for x in g) / len(g)
            for (s, n), g in zip(open_items, groups)
        )
        return [v if v is not None else next(filled) for v in values]  # None: the budget paid for no rollout


VALUE_QUESTION = "\nEvaluate whether the steps above can still reach a correct answer (sure/likely/impossible):"
VALUE_WORDS = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}


class SelfEvaluator:
    """Tree-of-Thoughts value prompt: the policy judges the state as sure / likely /
    impossible in `votes` samples; the value is the mean of the parsed judgements
    (an unparseable answer counts as `neutral`)."""

    name = "self_eval"

    def __init__(self, votes: int = 3, max_new_tokens: int = 16, temperature: float = 1.0, neutral: float = 0.5):
        self.votes, self.neutral = votes, neutral
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature)

    def _judge(self, text: str) -> float | None:
        """The judgement's value, None when it names none of VALUE_WORDS."""
        m = re.search(r"\b(sure|likely|impossible)\b", text.lower())
        return VALUE_WORDS[m.group(1)] if m else None

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float | None]:
        prompts = [s.text(n) + VALUE_QUESTION for s, n in items]
        groups = _sample_charged(items, prompts, policy, self.votes, self.sampler, seed, ["\n"])
        values: list[float | None] = []
        for (state, _), g in zip(items, groups):
            if g is None:
                values.append(None)
                continue
            judged = [self._judge(x.text) for x in g]  # the parse rate is a health figure of the run
            state.scratch["log_judgements"] = state.scratch.get("log_judgements", 0) + len(judged)
            state.scratch["log_parsed"] = state.scratch.get("log_parsed", 0) + sum(v is not None for v in judged)
            values.append(sum(self.neutral if v is None else v for v in judged) / len(judged))
        return values


class ValueModelEvaluator:
    """Any scorer with `value(texts) -> list[float]` (an ORM / PRM) over prompt + prefix."""

    name = "value_model"
    neutral = 0.5  # never needed: a value model costs no tokens, so every item is scored

    def __init__(self, model: Any):
        if not callable(getattr(model, "value", None)):
            raise TypeError(f"search.evaluator.model must have a value(texts) method, got {type(model).__name__}")
        self.model = model

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        if not items:
            return []
        values = [float(v) for v in self.model.value([s.text(n) for s, n in items])]
        if len(values) != len(items):
            raise ValueError(f"value model returned {len(values)} values for {len(items)} texts")
        return values
