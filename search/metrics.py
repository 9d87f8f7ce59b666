"""Accuracy and diversity metrics over search results.

* maj@1 is the accuracy of one greedy trace per problem (as in Havrilla et al.).
* pass@1 is the expected accuracy of one sampled trace (c / n).
* answer_accuracy scores the answer the strategy itself submits (`SearchResult.answer`).
* maj@k votes over the extracted final answers of k sampled traces (traces without an
  answer do not vote; ties go to the answer seen first) and checks the winner with the
  task's verifier.
* pass@k is the unbiased estimator of Chen et al. (2021) from n >= k samples with c correct.
* rerank@k picks the trace a scorer (an outcome reward model) likes best among k.
* distinct_correct counts different correct solutions per problem, by the task's
  `solution_key`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from math import comb

from policies import Policy
from search.budget import Budget
from search.expand import majority_vote
from search.result import SearchResult
from search.sampling import Sampling
from search.tree import Trace
from tasks import Problem, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(task: Task, problem: Problem, traces: Sequence[Trace], k: int) -> float:
    return float(task.check_answer(problem, majority_vote([t.answer for t in traces[:k]])))


def rerank_at_k(traces: Sequence[Trace], scores: Sequence[float], k: int) -> float:
    """Reward of the highest-scored trace among the first k (ties: the first)."""
    if not traces:
        return 0.0
    best = max(range(min(k, len(traces))), key=lambda i: scores[i])
    return float(traces[best].reward >= 1.0)


def distinct_correct(task: Task, problem: Problem, traces: Sequence[Trace]) -> int:
    return len({task.solution_key(problem, t.text) for t in traces if t.reward >= 1.0})


def summarize(
    task: Task,
    results: Sequence[SearchResult],
    k: int,
    scorer: Callable[[list[Trace]], list[float]] | None = None,
) -> dict[str, float]:
    """Mean maj@k, pass@k, pass@1, the strategy's answer accuracy, distinct correct
    solutions, tokens and policy calls over problems.

    Every problem counts: one whose search produced fewer than k traces is scored on
    what it has (pass@k over n < k traces is pass@n), and one with none scores 0.
    """
    if not results:
        raise ValueError("summarize needs at least one search result")
    rows = []
    for r in results:
        traces = r.traces()
        n, c = len(traces), sum(t.reward >= 1.0 for t in traces)
        row = {
            "answer_accuracy": float(task.check_answer(r.problem, r.answer)),
            "pass@1": c / n if n else 0.0,
            "maj@k": maj_at_k(task, r.problem, traces, k),
            "pass@k": pass_at_k(n, c, min(k, n)) if n else 0.0,
            "distinct_correct": distinct_correct(task, r.problem, traces),
            "tokens": r.tokens,
            "calls": r.calls,
        }
        if scorer is not None:
            row["rerank@k"] = rerank_at_k(traces, scorer(traces[:k]), k) if n else 0.0
        rows.append(row)
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def accuracy(results: Sequence[SearchResult]) -> float:
    """Fraction of problems whose first trace is correct (maj@1 when that trace is greedy)."""
    return sum(bool(r.traces()) and r.traces()[0].reward >= 1.0 for r in results) / max(1, len(results))


def greedy_results(policy: Policy, task: Task, problems: list[Problem], max_new_tokens: int = 256) -> list[SearchResult]:
    """One greedy trace per problem: `accuracy` of these is maj@1."""
    return Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens).search(problems, policy, task, Budget())


def evaluate_policy(policy: Policy, task: Task, problems: list[Problem], k: int, temperature: float = 1.0,
                    max_new_tokens: int = 256, seed: int = 0) -> dict[str, float]:
    """The policy's own accuracy, with no search: maj@1 from one greedy trace per problem;
    maj@k, pass@k and distinct correct solutions from k sampled traces."""
    started = time.perf_counter()
    greedy = greedy_results(policy, task, problems, max_new_tokens)
    sampled = Sampling(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + 1).search(
        problems, policy, task, Budget())
    summary = summarize(task, sampled, k)
    return {"maj@1": accuracy(greedy), "maj@k": summary["maj@k"], "pass@k": summary["pass@k"], "k": k,
            "distinct_correct": summary["distinct_correct"],
            "eval_tokens": sum(r.tokens for r in greedy + sampled), "eval_time": time.perf_counter() - started}
