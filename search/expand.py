"""The lockstep round every strategy is built on.

A strategy decides *which* nodes of *which* trees to grow; `expand` turns all of those
requests, across every problem of the batch, into ONE `policy.sample` call (the way
rStar-math's solver batches a round), keeps each problem inside its budget, and writes the
generated steps into the trees. Terminal steps are labelled by the verifier here, and only
here, so no strategy ever sees the gold answer of an unfinished trace.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies import Policy, Sample
from search.budget import Budget, BudgetMeter
from search.result import SearchResult
from search.tree import SearchTree
from tasks import Problem, Task


@dataclass
class ProblemState:
    """One problem's search in progress: its tree, its budget meter, its prompt."""

    problem: Problem
    tree: SearchTree
    meter: BudgetMeter
    prompt: str
    done: bool = False
    stop_reason: str | None = None  # why the search of this problem ended (see STOP_REASONS)
    scratch: dict[str, Any] = field(default_factory=dict)

    def text(self, node: int) -> str:
        """Prompt plus trace prefix: what the policy continues to grow `node`."""
        return self.prompt + self.tree.prefix(node)


STOP_REASONS = ("budget", "exhausted", "size")
"""budget: the token/call budget ran out; exhausted: the tree had no open node left (every
path finished) before the budget did; size: the strategy's own size limit (n traces,
simulations, generations, stop_after, depth without restarts) ended it first."""


@dataclass
class Expansion:
    """A request for `n` children of `node`; `prompt` overrides the default continuation
    prompt (e.g. an evolution rewrite prompt) while the children still hang under `node`."""

    state: ProblemState
    node: int
    n: int
    prompt: str | None = None


@dataclass
class Sampler:
    """How steps are drawn: the decoding knobs shared by every round of a strategy."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    max_depth: int = 16


def start(problems: list[Problem], task: Task, budget: Budget, strategy: str) -> list[ProblemState]:
    states = []
    for p in problems:
        prompt = task.prompt(p)
        states.append(ProblemState(p, SearchTree(p.id, prompt, strategy), BudgetMeter(budget), prompt))
    return states


def step_prior(logprobs: list[float]) -> float | None:
    """Length-normalised probability of a step, exp(mean token log p): comparable across
    steps of different lengths; PUCT normalises it over siblings."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else None


def label_terminal(state: ProblemState, node: int, task: Task) -> None:
    """Mark `node` finished and let the verifier judge its complete trace."""
    text = state.tree.prefix(node)
    state.tree[node].update(terminal=True, answer=task.extract_answer(text), reward=task.reward(state.problem, text))


def add_step(state: ProblemState, parent: int, sample: Sample, task: Task, iteration: int, max_depth: int) -> int:
    tree = state.tree
    node = tree.add_child(
        parent, sample.text, logprobs=sample.logprobs, token_ids=sample.token_ids, tokens=sample.num_tokens,
        prior=step_prior(sample.logprobs),
        iteration=iteration, finish_reason=sample.finish_reason,
    )
    if task.is_final(sample.text) or sample.finish_reason in ("eos", "length") or tree[node]["depth"] >= max_depth:
        label_terminal(state, node, task)
    return node


def _grant(expansions: list[Expansion], sampler: Sampler) -> tuple[dict[int, list[Expansion]], dict[int, int],
                                                                      dict[int, int]]:
    """What each problem's budget pays for this call: the requests per problem (`id(state)`),
    the children each request (`id(expansion)`) may have, and each problem's token cap per
    request. A problem with nothing left is marked done ("budget")."""
    by_state: dict[int, list[Expansion]] = {}
    for e in expansions:
        if e.state.tree[e.node]["terminal"]:
            raise ValueError(f"problem {e.state.problem.id}: node {e.node} is terminal and cannot be expanded")
        if e.n > 0:
            by_state.setdefault(id(e.state), []).append(e)
    granted: dict[int, int] = {}
    caps: dict[int, int] = {}
    for key, group in by_state.items():
        state = group[0].state
        sent, cap = (0, 0) if state.meter.exhausted else state.meter.allot(sampler.max_new_tokens, sum(e.n for e in group))
        if sent == 0:
            state.done, state.stop_reason = True, "budget"
            continue
        caps[key] = cap
        for e in group:
            granted[id(e)] = min(e.n, sent)
            sent -= granted[id(e)]
    return by_state, granted, caps


def expand(
    expansions: list[Expansion], policy: Policy, task: Task, sampler: Sampler, *,
    seed: int, iteration: int, step: bool = True,
) -> list[list[int]]:
    """Grow every requested node in one batched `policy.sample` call.

    Returns the new child ids per expansion, in order; an expansion whose problem has no
    budget left gets `[]` (and its state is marked done, stop reason "budget"). When the
    budget's tail cannot pay for every request, the later requests of a problem get
    fewer children (`BudgetMeter.allot`). A call is charged only to problems that had a
    request in it. `step=False` samples whole traces
    (no step delimiter) as single children. Requests for different `n` share the call by
    repeating a prompt `n_i / gcd` times, so equal requests use the engine's `n=`.
    """
    by_state, granted, caps = _grant(expansions, sampler)
    active = [e for e in expansions if granted.get(id(e), 0) > 0]
    if not active:
        return [[] for _ in expansions]
    n = math.gcd(*(granted[id(e)] for e in active))
    prompts, limits, owner = [], [], []
    for i, e in enumerate(active):
        for _ in range(granted[id(e)] // n):
            prompts.append(e.prompt if e.prompt is not None else e.state.text(e.node))
            limits.append(caps[id(e.state)])
            owner.append(i)
    samples = policy.sample(
        prompts, n=n, max_new_tokens=max(limits), temperature=sampler.temperature, top_p=sampler.top_p,
        stop=[task.step_stop] if step else None, seed=seed, max_new_tokens_per_prompt=limits,
    )
    children: dict[int, list[int]] = {i: [] for i in range(len(active))}
    spent: Counter[int] = Counter()
    for i, group in zip(owner, samples):
        e = active[i]
        for s in group:
            child = add_step(e.state, e.node, s, task, iteration, 1 if not step else sampler.max_depth)
            e.state.tree[child]["off_context"] = e.prompt is not None  # sampled under another prompt than its prefix
            children[i].append(child)
            spent[id(e.state)] += s.num_tokens
    for key in {id(e.state) for e in active}:
        by_state[key][0].state.meter.charge(spent[key], calls=1)
    index = {id(e): i for i, e in enumerate(active)}
    return [children[index[id(e)]] if id(e) in index else [] for e in expansions]


def draw_traces(
    states: list[ProblemState], anchors: list[int], n: int | None, batch: int, policy: Policy, task: Task,
    sampler: Sampler, *, seed: int, iteration: int = 0, prompts: list[str | None] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> int:
    """Whole traces under fixed anchors, `batch` more per problem each round until the
    problem has `n` of them (`n: None`: until its budget is spent) or its budget is, every
    problem of a round in one `expand` call (seed `seed + round`, labelled iteration
    `iteration + round`).

    `anchors[i]` is the node problem i's traces hang under and `prompts[i]` the prompt
    they continue instead of its prefix (None: the prefix). Only what this call draws
    counts toward `n`. `on_round(open)` sees, before every round and once at the end, how
    many problems still draw. Returns the number of rounds (of `expand` calls).
    """
    prompts = prompts if prompts is not None else [None] * len(states)
    drawn = [0] * len(states)

    def wanted(i: int) -> int:
        return batch if n is None else min(batch, n - drawn[i])

    rounds = 0
    while True:
        open_ = [i for i, s in enumerate(states) if not s.done and wanted(i) > 0]
        if on_round is not None:
            on_round(len(open_))
        if not open_:
            return rounds
        requests = [Expansion(states[i], anchors[i], wanted(i), prompt=prompts[i]) for i in open_]
        children = expand(requests, policy, task, sampler, seed=seed + rounds, iteration=iteration + rounds,
                          step=False)
        for i, new in zip(open_, children):
            drawn[i] += len(new)
        rounds += 1


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent non-None answer; ties go to the answer seen first."""
    counts = Counter(a for a in answers if a is not None)
    return max(counts, key=lambda a: (counts[a], -answers.index(a))) if counts else None


def finish(states: list[ProblemState], answers: list[str | None], started: float) -> list[SearchResult]:
    """Results with each problem's spend and stop reason. Problems share every batched
    call, so each reports an equal share of the batch's wall time (the shares add up to
    the total)."""
    share = (time.perf_counter() - started) / max(1, len(states))
    return [
        SearchResult(problem=s.problem, tree=s.tree, tokens=s.meter.tokens, calls=s.meter.calls,
                     wall_time=share, answer=a, stop_reason=stop_reason(s))
        for s, a in zip(states, answers)
    ]


def stop_reason(state: ProblemState) -> str:
    """The recorded reason, else "budget" when the meter is spent, else "size"."""
    if state.stop_reason is not None:
        return state.stop_reason
    return "budget" if state.done or state.meter.exhausted else "size"
