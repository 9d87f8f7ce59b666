"""A policy's own evaluation, with no search: draw its eval samples and make its eval row.

maj@1 reads one greedy trace per problem; maj@k, pass@k, trace_valid@k and distinct
correct solutions read k sampled traces (the estimators of `search.metrics`). The samples are
drawn by `search.sampling`, `EVAL_CHUNK` problems per call, each chunk with its own seed,
so the traces depend on the seed alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from tqdm.auto import tqdm

from policies import Policy
from search.budget import Budget
from search.metrics import first_correct, summarize
from search.result import SearchResult
from search.sampling import Sampling
from search.tree import Trace
from tasks import Problem, Task

EVAL_CHUNK = 25  # problems per sampling call in `evaluate_policy`: the progress bar moves once per chunk


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
    """One greedy trace per problem: `search.metrics.accuracy` of these is maj@1."""
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
