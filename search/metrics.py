"""Accuracy and diversity metrics over search results, each family with one judge.

Answer metrics judge a trace by its final answer alone: `task.check_answer` on the answer
the task extracts from it, as Havrilla et al. (2024) report maj@1, maj@k and pass@k.

* maj@1 is the accuracy of one greedy trace per problem.
* pass@1 is the expected accuracy of one sampled trace (c / n, c answer-correct traces of n).
* maj@k votes over the extracted final answers of k sampled traces (traces without an
  answer do not vote; ties go to the answer seen first) and checks the winner.
* pass@k is the unbiased estimator of Chen et al. (2021) from n >= k samples with c correct.
  Evaluation draws exactly k samples, so a problem's majority answer is right only if some
  sample is, and maj@k <= pass@k per problem.
* rerank@k checks the trace a scorer (an outcome reward model) likes best among k.
* distinct_correct counts different answer-correct solutions per problem, by the task's
  `solution_key`.
* answer_accuracy checks the answer the strategy itself submits (`SearchResult.answer`).

The trace metric judges every step: `trace_valid@k` is pass@k with "correct" meaning the
trace earned the task's full reward (`task.reward` >= 1, the sparse training reward). On
Countdown and arith that reward checks each step's arithmetic and bookkeeping, so a trace
can reach the right answer through an illegal step and count for pass@k but not for
trace_valid@k; on tasks whose reward checks only the answer (GSM8K, SVAMP) the two agree.

These are estimators over traces already drawn; `search.policy_eval` draws a policy's eval
samples (greedy and k sampled traces per problem) and makes its eval row from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb

from search.expand import majority_vote
from search.result import SearchResult
from search.tree import Trace
from tasks import Problem, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def answer_correct(task: Task, problem: Problem, trace: Trace) -> bool:
    """The judge of every answer metric: is the trace's extracted final answer right?"""
    return task.check_answer(problem, trace.answer)


def full_reward(reward: float) -> bool:
    """Whether a reward is the full one (every step checked): the one rule for a saved trace's
    reward and a live trace alike."""
    return reward >= 1.0


def trace_valid(trace: Trace) -> bool:
    """The judge of trace_valid@k: did the trace earn the full reward (every step checked)?"""
    return full_reward(trace.reward)


def maj_at_k(task: Task, problem: Problem, traces: Sequence[Trace], k: int) -> float:
    return float(task.check_answer(problem, majority_vote([t.answer for t in traces[:k]])))


def rerank_at_k(task: Task, problem: Problem, traces: Sequence[Trace], scores: Sequence[float], k: int) -> float:
    """Answer correctness of the highest-scored trace among the first k (ties: the first)."""
    if not traces:
        return 0.0
    best = max(range(min(k, len(traces))), key=lambda i: scores[i])
    return float(answer_correct(task, problem, traces[best]))


def distinct_correct(task: Task, problem: Problem, traces: Sequence[Trace]) -> int:
    return len({task.solution_key(problem, t.text) for t in traces if answer_correct(task, problem, t)})


def _at_most_k(n: int, c: int, k: int) -> float:
    """pass@k over n traces, or pass@n when fewer than k exist (0 with none)."""
    return pass_at_k(n, c, min(k, n)) if n else 0.0


def summarize(
    task: Task,
    results: Sequence[SearchResult],
    k: int,
    scorer: Callable[[list[Trace]], list[float]] | None = None,
) -> dict[str, float]:
    """Mean maj@k, pass@k, pass@1, trace_valid@k, the strategy's answer accuracy, distinct
    correct solutions, tokens and policy calls over problems.

    Every problem counts: one whose search produced fewer than k traces is scored on
    what it has (pass@k over n < k traces is pass@n), and one with none scores 0.
    """
    if not results:
        raise ValueError("summarize needs at least one search result")
    rows = []
    for r in results:
        traces = r.traces()
        n = len(traces)
        c = sum(answer_correct(task, r.problem, t) for t in traces)
        row = {
            "answer_accuracy": float(task.check_answer(r.problem, r.answer)),
            "pass@1": c / n if n else 0.0,
            "maj@k": maj_at_k(task, r.problem, traces, k),
            "pass@k": _at_most_k(n, c, k),
            "trace_valid@k": _at_most_k(n, sum(trace_valid(t) for t in traces), k),
            "distinct_correct": distinct_correct(task, r.problem, traces),
            "tokens": r.tokens,
            "calls": r.calls,
        }
        if scorer is not None:
            row["rerank@k"] = rerank_at_k(task, r.problem, traces, scorer(traces[:k]), k) if n else 0.0
        rows.append(row)
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def first_correct(task: Task, results: Sequence[SearchResult]) -> list[bool]:
    """Per problem: does its first trace have the right answer (none: no)?"""
    return [bool(r.traces()) and answer_correct(task, r.problem, r.traces()[0]) for r in results]


def accuracy(task: Task, results: Sequence[SearchResult]) -> float:
    """Fraction of problems whose first trace has the right answer (maj@1 when that trace is greedy)."""
    return sum(first_correct(task, results)) / max(1, len(results))
