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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from math import comb
from typing import NamedTuple

from tqdm.auto import tqdm

from policies import Policy
from search.budget import Budget
from search.expand import majority_vote
from search.result import SearchResult
from search.sampling import Sampling
from search.tree import Trace
from tasks import Problem, Task

EVAL_CHUNK = 25  # problems per sampling call in `evaluate_policy`: the progress bar moves once per chunk


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


def trace_valid(trace: Trace) -> bool:
    """The judge of trace_valid@k: did the trace earn the full reward (every step checked)?"""
    return trace.reward >= 1.0


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


def sample_with_progress(policy: Policy, task: Task, problems: list[Problem], n: int, temperature: float,
                         max_new_tokens: int, seed: int, desc: str, progress: bool) -> list[SearchResult]:
    """`n` traces per problem, sampled `EVAL_CHUNK` problems per call so that a bar can
    show problems done / total and generated tokens per second. Chunk i samples with
    seed + i (one sampling round per chunk), so the traces depend on the seed alone."""
    results: list[SearchResult] = []
    started, tokens = time.perf_counter(), 0
    with tqdm(total=len(problems), desc=desc, unit="problem", disable=not progress, leave=False) as bar:
        for i, at in enumerate(range(0, len(problems), EVAL_CHUNK)):
            strategy = Sampling(n=n, batch=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + i)
            chunk = strategy.search(problems[at : at + EVAL_CHUNK], policy, task, Budget())
            results += chunk
            tokens += sum(r.tokens for r in chunk)
            bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f} tok/s", refresh=False)
            bar.update(len(chunk))
    return results


def greedy_results(policy: Policy, task: Task, problems: list[Problem], max_new_tokens: int = 256,
                   progress: bool = False) -> list[SearchResult]:
    """One greedy trace per problem: `accuracy` of these is maj@1."""
    return sample_with_progress(policy, task, problems, 1, 0.0, max_new_tokens, 0, "eval maj@1 (greedy)", progress)


class PolicyEval(NamedTuple):
    """An eval row, and per problem whether its greedy trace is answer-correct: the row's
    maj@1 is their mean, and the laboratory's per-slice maj@1 reads them instead of
    decoding the greedy traces again."""

    row: dict[str, float]
    greedy_correct: list[bool]


def evaluate_policy(policy: Policy, task: Task, problems: list[Problem], k: int, temperature: float = 1.0,
                    max_new_tokens: int = 256, seed: int = 0, progress: bool = False,
                    scorer: Callable[[list[Trace]], list[float]] | None = None) -> PolicyEval:
    """The policy's own accuracy, with no search: maj@1 from one greedy trace per problem;
    maj@k, pass@k, trace_valid@k and distinct correct solutions from k sampled traces, and
    rerank@k when a `scorer` (an outcome reward model) is given."""
    started = time.perf_counter()
    greedy = greedy_results(policy, task, problems, max_new_tokens, progress)
    sampled = sample_with_progress(policy, task, problems, k, temperature, max_new_tokens, seed + 1,
                                   f"eval {k} samples", progress)
    summary = summarize(task, sampled, k, scorer)
    keys = ("maj@k", "pass@k", "trace_valid@k", "distinct_correct") + (("rerank@k",) if scorer else ())
    correct = first_correct(task, greedy)
    row = {"maj@1": sum(correct) / max(1, len(correct)), "k": k, **{key: summary[key] for key in keys},
           "eval_tokens": sum(r.tokens for r in greedy + sampled), "eval_time": time.perf_counter() - started}
    return PolicyEval(row, correct)
