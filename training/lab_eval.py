"""The plateau laboratory's evaluation row: the instruments of `training.instruments` on
many samples per problem, for all problems and for the in/beyond-support slices.

Every eval row of a run with `eval.lab` set gains, for each slice `s` of `all`,
`in_support` and `beyond_support` (`tasks.support`; a slice is left out when it has no
problems):

* `s/maj@1`, the row's own maj@1 on the slice (the greedy traces `evaluate_policy` decoded
  under `eval.max_new_tokens`, passed in as per-problem correctness, not decoded again), and
  `s/pass@k` at k = 1, 2, 4, ... up to `eval.lab.samples` (answer correctness, unbiased;
  `eval.lab.max_new_tokens` caps these samples);
* `s/coverage` (share of each problem's solver-listed solutions found) and
  `s/novel_correct` (share of correct *samples* whose solution uses an operation the SFT data
  never showed: a problem solved often weighs more; None for a task without `solutions()`);
  `s/problems`;
* `lab_counts`: per problem `[samples, correct, slice]`, so the report can bootstrap
  bands and compare curves between iterations;
* `entropy`: mean per-token entropy of the policy on its own samples (Cui et al. 2025);
* `base_nll`: mean per-token negative log-likelihood of the policy's correct samples
  under the base (iteration-0) policy: how far from the base's own habits they lie.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from policies import Policy, TrainablePolicy
from search.metrics import answer_correct
from search.policy_eval import sample_with_progress
from search.result import SearchResult
from tasks import Problem, Task
from tasks.support import SLICES, SupportRule
from training.instruments import coverage, novel_correct, pass_at_k_curve, powers_of_two
from training.sft import completion_entropy


def slice_members(task: Task, problems: list[Problem], rule: SupportRule) -> dict[str, list[int]]:
    """Indices of the problems in each slice (`all` first)."""
    out: dict[str, list[int]] = {"all": list(range(len(problems)))}
    for i, p in enumerate(problems):
        if (name := rule.slice_of(task, p)) is not None:
            out.setdefault(name, []).append(i)
    return {s: out[s] for s in ("all", *SLICES) if s in out}


def correct_solutions(task: Task, result: SearchResult) -> list[str]:
    """The solution keys of a result's correct traces (with repeats)."""
    return [task.solution_key(result.problem, t.text) for t in result.traces()
            if answer_correct(task, result.problem, t)]


def slice_metrics(task: Task, results: list[SearchResult], greedy_correct: list[bool], rule: SupportRule,
                  ks: list[int]) -> dict[str, Any]:
    counts = [(len(r.traces()), sum(answer_correct(task, r.problem, t) for t in r.traces())) for r in results]
    curve = pass_at_k_curve(counts, ks)
    found = [set(correct_solutions(task, r)) for r in results]
    listed = [set(task.solutions(r.problem) or ()) for r in results]
    keys = [k for r in results for k in correct_solutions(task, r)]
    return {"maj@1": sum(greedy_correct) / max(1, len(greedy_correct)), **{f"pass@{k}": v for k, v in zip(ks, curve)},
            "coverage": coverage(found, listed),
            "novel_correct": novel_correct(keys, rule.covers) if any(listed) else None, "problems": len(results)}


def lab_due(lab: Any, iteration: int, iterations: int) -> bool:
    """Whether iteration `iteration`'s eval row carries the instruments: at every
    iteration with `eval.lab.every: null`, else at iteration 0, every `every`-th and the
    last (pass@k base vs final and `crossover_k` need only the two ends, and the 64-sample
    pass is most of an eval's cost)."""
    if not lab:
        return False
    every = lab.get("every")
    if every is None:
        return True
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"eval.lab.every: expected null or an integer >= 1, got {every!r}")
    return iteration in (0, iterations) or iteration % every == 0


def lab_metrics(policy: TrainablePolicy, base: Policy | None, task: Task, problems: list[Problem], lab: Any, seed: int,
                greedy_correct: Sequence[bool], progress: bool = False) -> dict[str, Any]:
    """The laboratory's metrics of `policy` on `problems` (see the module docstring);
    `greedy_correct[i]`: is problem i's greedy trace answer-correct (`PolicyEval.greedy_correct`)."""
    if lab.samples < 1:
        raise ValueError(f"eval.lab.samples must be >= 1, got {lab.samples}")
    if len(greedy_correct) != len(problems):
        raise ValueError(f"lab_metrics: {len(greedy_correct)} greedy verdicts for {len(problems)} problems")
    rule = SupportRule(tuple((lab.get("support") or {}).get("exclude_ops") or ()))
    results = sample_with_progress(policy, task, problems, lab.samples, 1.0, lab.max_new_tokens, seed,
                                   f"lab {lab.samples} samples", progress)
    ks = powers_of_two(lab.samples)
    members = slice_members(task, problems, rule)
    out: dict[str, Any] = {}
    for name, idx in members.items():
        greedy = [bool(greedy_correct[i]) for i in idx]
        for key, value in slice_metrics(task, [results[i] for i in idx], greedy, rule, ks).items():
            out[f"{name}/{key}"] = value
    slice_of = {i: s for s, idx in members.items() if s != "all" for i in idx}
    out["lab_counts"] = [[len(r.traces()), sum(answer_correct(task, r.problem, t) for t in r.traces()),
                          slice_of.get(i)] for i, r in enumerate(results)]
    out["entropy"] = own_entropy(policy, results, lab.entropy_samples)
    out["base_nll"] = base_nll(base, task, results) if base is not None else None
    return out


def own_entropy(policy: TrainablePolicy, results: list[SearchResult], per_problem: int) -> float | None:
    """Mean per-token entropy over the first `per_problem` samples of each problem."""
    pairs = [(policy.encode_prompt(r.tree.prompt), [i for ids in t.step_token_ids for i in ids])
             for r in results for t in r.traces()[:per_problem]]
    pairs = [p for p in pairs if p[1]]  # completion_entropy is nan only for no tokens: none then
    return completion_entropy(policy.model, policy.tokenizer, pairs) if pairs else None


def base_nll(base: Policy, task: Task, results: list[SearchResult]) -> float | None:
    """Mean per-token NLL of the correct samples under `base` (None without any)."""
    correct = [(r.tree.prompt, t.text) for r in results for t in r.traces() if answer_correct(task, r.problem, t)]
    if not correct:
        return None
    logps = base.logprobs([p for p, _ in correct], [c for _, c in correct])
    tokens = [-lp for row in logps for lp in row]
    return statistics.fmean(tokens) if tokens else None
