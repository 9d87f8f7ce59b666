"""Search traces as token rollouts: what PPO and GRPO train on.

A search result's traces become `Rollout`s: the token ids the sampler produced (prompt via
`encode_prompt`, each step via `encode_continuation`, EOS when the trace ended on it) with
the log-probabilities recorded at generation time (`sampler_logp`). Traces that cannot be
scored exactly are left out and counted by reason (`DROP_REASONS`), so a trainer reports
what it lost instead of dropping it silently.

Steps whose tokens were not sampled under their tree prefix (`off_context` nodes: an
evolution rewrite prompt, a crossover splice; or not sampled at all: an XoT guide's step,
which has text but no ids and is encoded from its text) stay in the rollout as context but
get loss mask 0: the sampler's probability of those tokens given the prefix is unknown, so no
importance ratio exists for them, and training them as if sampled there would push the
policy toward text it was never asked to produce. They are counted as `off_context_tokens`.

Trainers that credit tree steps (GRPO's `group: siblings` and `tree_advantage`, PPO's
`advantage: tree`) read each tree's node values here (`tree_values`, TreeRL's V) and hand
them to `training.core_algos` as tensors, which never sees a tree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from policies import TrainablePolicy
from search import SearchResult
from search.tree import SearchTree, Trace
from tasks import Task
from training import core_algos

DROP_REASONS = ("retokenise", "empty", "context_only")
"""retokenise: a step's text does not re-encode to its sampled ids (or ids and logprobs
disagree in length), so later steps were sampled from a context the ids do not show;
empty: the trace has no response token to train on; context_only: every step is
`off_context` (e.g. XoT's traces written under its hint prompt), so no token of it was
sampled under the context it would be trained in."""


class TokenMismatch(ValueError):
    """A trace's text does not re-encode to the tokens the sampler recorded (e.g. the model
    sampled a special token, whose text is empty)."""


@dataclass
class Rollout:
    """One trace as token ids plus per-response-token training data (lists, one entry per
    response token). `loss_mask` is 0 on tokens trained through another rollout (a tree
    step shared by several traces is credited once)."""

    result: SearchResult
    trace: Trace
    prompt_ids: list[int]
    response_ids: list[int]
    sampler_logp: list[float]  # recorded at generation time
    step_ends: list[int]  # response-token end (exclusive) of each tree step
    loss_mask: list[float] = field(default_factory=list)
    old_logp: list[float] = field(default_factory=list)  # pi_old of the update (recomputed or the sampler's)
    advantages: list[float] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    old_values: list[float] = field(default_factory=list)
    ref_logp: list[float] = field(default_factory=list)


def encode_trace(policy: TrainablePolicy, result: SearchResult, trace: Trace) -> Rollout:
    """The ids the sampler produced for `trace` (recorded in the tree, EOS included when
    the trace ended on it), checked against its recorded logprobs.

    A tree step after the first was sampled from the *re-tokenised text* of the steps
    before it, so the recorded ids are the policy's true context only when that text
    tokenises back to them (a special token sampled mid-step, or a tokenizer merging across
    a step boundary, breaks this); such traces raise TokenMismatch instead of giving
    importance ratios against a context the policy never saw.
    """
    prompt_ids = list(policy.encode_prompt(trace.prompt))
    response, logps, ends = [], [], []
    last = len(trace.steps) - 1
    for i, (ids, lps) in enumerate(zip(trace.step_token_ids, trace.step_logprobs)):
        written = not ids and not lps and result.tree[trace.node_ids[i]]["off_context"]
        if written:  # re-tokenised from its text, so the check below holds by construction
            ids = _context_ids(policy, trace, i, prompt_ids + response)
            lps = [0.0] * len(ids)  # a placeholder: these tokens get loss mask 0, and every use of them is masked
        if len(ids) != len(lps) or not ids:
            raise TokenMismatch(
                f"problem {trace.problem_id}, trace node {trace.node_ids[i]}: {len(ids)} recorded token ids but "
                f"{len(lps)} logprobs; importance ratios cannot be formed")
        response += ids
        logps += lps
        ends.append(len(response))
        check_next_context = i < last and not written
        if check_next_context and list(policy.encode_prompt(trace.prompt + "".join(trace.steps[: i + 1]))) != (
                prompt_ids + response):
            raise TokenMismatch(
                f"problem {trace.problem_id}, trace node {trace.node_ids[i]}: the step's text does not tokenise back "
                "to its sampled ids, so the next step was sampled from a different context")
    return Rollout(result, trace, prompt_ids, response, logps, ends, loss_mask=[1.0] * len(response))


def _context_ids(policy: TrainablePolicy, trace: Trace, i: int, before: list[int]) -> list[int]:
    """The ids of step `i`, written by no sampler (an XoT guide's step), as the policy reads
    them: the re-tokenised text after the ids `before` it, which that text must extend."""
    ids = list(policy.encode_prompt(trace.prompt + "".join(trace.steps[: i + 1])))
    if ids[: len(before)] != before:
        raise TokenMismatch(
            f"problem {trace.problem_id}, trace node {trace.node_ids[i]}: the unsampled step's text changes the "
            "tokens of the steps before it when tokenised after them")
    return ids[len(before):]


def text_step_ends(policy: TrainablePolicy, task: Task, rollout: Rollout) -> list[int]:
    """Response-token end of each of the task's text steps (`task.split_steps` of the
    trace text); the last one is the final token (EOS included), where the outcome lands."""
    ends, node_start_char, node_start_tok = [], 0, 0
    steps = task.split_steps(rollout.trace.text)
    boundaries, offset = [], 0
    for s in steps:
        offset += len(s)
        boundaries.append(offset)
    for step_text, node_end in zip(rollout.trace.steps, rollout.step_ends):
        node_end_char = node_start_char + len(step_text)
        for b in boundaries:
            if node_start_char < b <= node_end_char and b != boundaries[-1]:
                inside = len(policy.encode_continuation(step_text[: b - node_start_char]))
                ends.append(min(node_start_tok + inside, node_end))
        node_start_char, node_start_tok = node_end_char, node_end
    return ends + [len(rollout.response_ids)] if steps else []


def credit_shared_steps_once(rollouts: list[Rollout]) -> None:
    """Zero the loss mask of tree steps already in an earlier rollout of the same tree, so
    node-level advantages count each step once (the prefix stays as context)."""
    seen: set[tuple[int, int]] = set()
    for r in rollouts:
        start = 0
        for node, end in zip(r.trace.node_ids, r.step_ends):
            key = (id(r.result.tree), node)
            if key in seen:
                r.loss_mask[start:end] = [0.0] * (end - start)
            seen.add(key)
            start = end


def per_node_advantages(rollout: Rollout, advantage: dict[int, float]) -> list[float]:
    """Each token carries the advantage of the tree step it belongs to."""
    out, start = [], 0
    for node, end in zip(rollout.trace.node_ids, rollout.step_ends):
        out += [advantage.get(node, 0.0)] * (end - start)
        start = end
    return out


def tree_values(tree: SearchTree) -> dict[int, float]:
    """Each node's value = mean verifier reward of the terminal leaves below it (itself
    included), the TreeRL estimate. Nodes with no finished trace below are left out."""
    totals: dict[int, tuple[float, int]] = {}
    for leaf in tree.terminals():
        reward = float(tree[leaf]["reward"] or 0.0)
        for node in tree.path(leaf):
            s, n = totals.get(node, (0.0, 0))
            totals[node] = (s + reward, n + 1)
    return {node: s / n for node, (s, n) in totals.items()}


def _valued_steps(tree: SearchTree) -> tuple[dict[int, float], list[int]]:
    """`tree_values`, and the non-root nodes that have one (in its order)."""
    values = tree_values(tree)
    return values, [n for n in values if n != tree.root]


def tree_step_advantages(tree: SearchTree, mode: str = "local") -> dict[int, float]:
    """{node id: TreeRL advantage} (`core_algos.tree_advantages`, local | global | both) of
    every non-root node with a finished trace below it."""
    values, nodes = _valued_steps(tree)
    adv = core_algos.tree_advantages(torch.tensor([values[n] for n in nodes], dtype=torch.float64),
                                     torch.tensor([values[tree.parent(n)] for n in nodes], dtype=torch.float64),
                                     values.get(tree.root, 0.0), mode)
    return dict(zip(nodes, adv.tolist()))


def sibling_step_advantages(tree: SearchTree, norm_std: bool = True, eps: float = 1e-6) -> dict[int, float]:
    """GRPO over siblings: each step's `tree_values` value relative to its siblings'
    (children of the same parent; `core_algos.group_advantages`). On a depth-1 tree this is
    GRPO over the problem's samples. Returns {node id: advantage}."""
    values, nodes = _valued_steps(tree)
    scores = torch.tensor([values[n] for n in nodes], dtype=torch.float64)
    adv = core_algos.group_advantages(scores, [tree.parent(n) for n in nodes], norm_std, eps)
    return dict(zip(nodes, adv.tolist()))


def assign_step_advantages(rollouts: list[Rollout], advantages_of: Callable[[SearchTree], dict[int, float]]) -> None:
    """Every token gets the advantage of its tree step (`advantages_of(tree)`, once per
    tree; steps without one get 0), and steps shared by several rollouts are trained once."""
    by_tree: dict[int, dict[int, float]] = {}
    for r in rollouts:
        key = id(r.result.tree)
        if key not in by_tree:
            by_tree[key] = advantages_of(r.result.tree)
        r.advantages = per_node_advantages(r, by_tree[key])
    credit_shared_steps_once(rollouts)


def mask_off_context(rollout: Rollout) -> int:
    """Zero the loss mask of the steps on `off_context` tree nodes; returns their token count."""
    masked, start = 0, 0
    for node, end in zip(rollout.trace.node_ids, rollout.step_ends):
        if rollout.result.tree[node]["off_context"]:
            rollout.loss_mask[start:end] = [0.0] * (end - start)
            masked += end - start
        start = end
    return masked


def build_rollouts(policy: TrainablePolicy, results: list[SearchResult]) -> tuple[list[Rollout], dict[str, int]]:
    """Every trace that encodes exactly and has a token to train, its off-context steps
    masked; and the number of traces dropped per reason in `DROP_REASONS`
    (`traces_dropped_<reason>` in step metrics)."""
    rollouts, dropped = [], Counter({reason: 0 for reason in DROP_REASONS})
    for result in results:
        for trace in result.traces():
            try:
                rollout = encode_trace(policy, result, trace)
            except TokenMismatch:
                dropped["retokenise"] += 1
                continue
            if not rollout.response_ids:
                dropped["empty"] += 1
            elif mask_off_context(rollout) == len(rollout.response_ids):
                dropped["context_only"] += 1
            else:
                rollouts.append(rollout)
    return rollouts, dict(dropped)


def context_tokens(rollouts: list[Rollout]) -> int:
    """Response tokens kept as context only (loss mask 0), before shared steps are credited once."""
    return int(sum(len(r.loss_mask) - sum(r.loss_mask) for r in rollouts))
