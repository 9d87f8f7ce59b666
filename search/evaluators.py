"""Node evaluators: how a strategy scores a partial trace, all batched across problems.

An evaluator gets `(state, node)` pairs from every tree of the round and returns one value
in [0, 1] per pair, spending policy tokens (charged to each problem's budget) when it
needs the policy. What an evaluator may know is part of its definition: `terminal` and
`rollout` use the verifier on finished traces only (the ExIt / rStar setting), while
`self_eval` and `value_model` never touch the gold answer.
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
    name: str

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        ...


class TerminalEvaluator:
    """The verifier's reward on finished traces; `neutral` on unfinished ones."""

    name = "terminal"

    def __init__(self, neutral: float = 0.5):
        self.neutral = neutral

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        return [float(s.tree[n]["reward"]) if s.tree[n]["terminal"] else self.neutral for s, n in items]


def _caps(items: list[Item], per_item: int, max_new_tokens: int) -> dict[int, int]:
    """Each problem's per-request token cap when all its items issue `per_item` requests."""
    count = Counter(id(s) for s, _ in items)
    caps = {}
    for s, _ in items:
        if id(s) not in caps:
            caps[id(s)] = 0 if s.meter.exhausted else s.meter.cap(max_new_tokens, count[id(s)] * per_item)
    return caps


def _sample_charged(items: list[Item], prompts: list[str], policy: Policy, n: int, sampler: Sampler,
                    seed: int, stop: list[str] | None) -> list[list | None]:
    """One batched call for the items whose problem still has budget; charges each."""
    caps = _caps(items, n, sampler.max_new_tokens)
    live = [i for i, (s, _) in enumerate(items) if caps[id(s)] > 0]
    out: list[list | None] = [None] * len(items)
    if not live:
        return out
    limits = [caps[id(items[i][0])] for i in live]
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
            self.neutral if g is None else sum(task.reward(s.problem, s.tree.prefix(n) + x.text) for x in g) / len(g)
            for (s, n), g in zip(open_items, groups)
        )
        return [v if v is not None else next(filled) for v in values]


VALUE_QUESTION = "\nEvaluate whether the steps above can still reach a correct answer (sure/likely/impossible):"
VALUE_WORDS = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}


class SelfEvaluator:
    """Tree-of-Thoughts value prompt: the policy judges the state as sure / likely /
    impossible in `votes` samples; the value is the mean of the parsed judgements
    (an unparseable answer counts as `neutral`). A task may supply its own
    `value_prompt(problem, prefix)`."""

    name = "self_eval"

    def __init__(self, votes: int = 3, max_new_tokens: int = 8, temperature: float = 1.0, neutral: float = 0.5):
        self.votes, self.neutral = votes, neutral
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature)

    def _prompt(self, task: Task, state: ProblemState, node: int) -> str:
        custom = getattr(task, "value_prompt", None)
        if custom is not None:
            return custom(state.problem, state.tree.prefix(node))
        return state.text(node) + VALUE_QUESTION

    def _judge(self, text: str) -> float:
        m = re.search(r"\b(sure|likely|impossible)\b", text.lower())
        return VALUE_WORDS[m.group(1)] if m else self.neutral

    def evaluate(self, items: list[Item], policy: Policy, task: Task, seed: int) -> list[float]:
        prompts = [self._prompt(task, s, n) for s, n in items]
        groups = _sample_charged(items, prompts, policy, self.votes, self.sampler, seed, ["\n"])
        return [self.neutral if g is None else sum(self._judge(x.text) for x in g) / len(g) for g in groups]


class ValueModelEvaluator:
    """Any scorer with `value(texts) -> list[float]` (an ORM / PRM) over prompt + prefix."""

    name = "value_model"

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


EVALUATORS = {"terminal": TerminalEvaluator, "rollout": RolloutEvaluator, "self_eval": SelfEvaluator}


def make_evaluator(spec: str | Evaluator) -> Evaluator:
    """An evaluator from a built object or a name (`search.evaluator=rollout` on the
    command line); named evaluators get their default knobs."""
    if not isinstance(spec, str):
        return spec
    if spec not in EVALUATORS:
        raise ValueError(f"search.evaluator: unknown evaluator {spec!r}; choose from {sorted(EVALUATORS)} "
                         "or give a config node with _target_ (value_model needs its model)")
    return EVALUATORS[spec]()
