"""How a round's update moved the likelihood of that round's own traces, correct and wrong
apart: `logp_shift_correct` and `logp_shift_wrong` on every train row, the mean change of a
trace's summed log p (nats) from before the trainer's step to after it, over up to
`PROBE_TRACES` traces of each kind drawn from the round's search.

Why: two updates can move the policy equally far (the same `approx_kl`) and do opposite
things with it. On the plateau laboratory's first round, EI raised its correct traces by
+0.43 nats a trace and lowered the wrong ones by 3.45; PPO and GRPO lowered the wrong ones
by 0.7-1.2 and left the correct ones where they were (-0.12 to +0.05). Their updates were
spent pushing failures down, and the mass went elsewhere than to the correct traces. This
is the figure that shows it; the round's approx_kl, entropy and accuracy do not.
"""

from __future__ import annotations

import random
import statistics

from policies import Policy
from search import SearchResult
from search.metrics import answer_correct
from tasks import Task

PROBE_TRACES = 256  # per kind (correct, wrong): two teacher-forced passes over at most 512 traces a round

Probe = list[tuple[str, str, bool]]  # (prompt, trace text, correct)


def draw_probe(task: Task, results: list[SearchResult], seed: int) -> Probe:
    """Up to `PROBE_TRACES` correct and as many wrong traces of the round, drawn with `seed`."""
    kinds: dict[bool, Probe] = {True: [], False: []}
    for r in results:
        for t in r.traces():
            if t.text:
                correct = answer_correct(task, r.problem, t)
                kinds[correct].append((r.tree.prompt, t.text, correct))
    rng = random.Random(seed)
    return [x for kind in kinds.values() for x in rng.sample(kind, min(PROBE_TRACES, len(kind)))]


def trace_logps(policy: Policy, probe: Probe) -> list[float]:
    """Each probed trace's summed log p under `policy` as it stands."""
    if not probe:
        return []
    return [sum(row) for row in policy.logprobs([p for p, _, _ in probe], [t for _, t, _ in probe])]


def logp_shift(probe: Probe, before: list[float], after: list[float]) -> dict[str, float | None]:
    """Mean after - before per kind; None for a kind the round did not produce."""
    out: dict[str, float | None] = {}
    for key, kind in (("logp_shift_correct", True), ("logp_shift_wrong", False)):
        deltas = [a - b for (_, _, correct), b, a in zip(probe, before, after) if correct == kind]
        out[key] = statistics.fmean(deltas) if deltas else None
    return out
