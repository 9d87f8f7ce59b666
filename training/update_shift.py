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

For a round of a run saved before the figure existed (its traces file and checkpoints):

    python -m training.update_shift <run folder> <iteration>
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from policies import Policy
from search import SearchResult
from search.metrics import answer_correct
from tasks import Task
from tasks.config import build_task
from training.seeding import derived_seed

PROBE_TRACES = 256  # per kind (correct, wrong): two teacher-forced passes over at most 512 traces a round

Probe = list[tuple[str, str, bool]]  # (prompt, trace text, correct)


def round_traces(task: Task, results: list[SearchResult]) -> Probe:
    """Every non-empty trace of a round's search, judged as the answer metrics judge it."""
    return [(r.tree.prompt, t.text, answer_correct(task, r.problem, t)) for r in results for t in r.traces() if t.text]


def draw_probe(traces: Probe, seed: int) -> Probe:
    """Up to `PROBE_TRACES` correct and as many wrong traces, drawn with `seed`."""
    rng = random.Random(seed)
    kinds = [[x for x in traces if x[2] is kind] for kind in (True, False)]
    return [x for kind in kinds for x in rng.sample(kind, min(PROBE_TRACES, len(kind)))]


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


def saved_round(run: Path, iteration: int) -> dict[str, float | None]:
    """The figures of a saved run's round, from `traces/iter_<i>.jsonl` and the checkpoints
    around it (the run's base before round 1), with the probe the run itself would draw."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    task = build_task(cfg.task)
    problems = {p.id: p for p in task.problems("train")}
    traces_file = run / "traces" / f"iter_{iteration:03d}.jsonl"
    rows = [json.loads(line) for line in traces_file.read_text().splitlines()]
    traces = [(r["prompt"], r["completion"], task.check_answer(problems[r["problem_id"]], r["answer"]))
              for r in rows if r["completion"]]
    probe = draw_probe(traces, derived_seed(cfg.seed, iteration, 3))
    policy = instantiate(cfg.policy)
    if iteration > 1:
        policy.update_weights(run / "checkpoints" / f"iter_{iteration - 1:03d}")
    before = trace_logps(policy, probe)
    policy.update_weights(run / "checkpoints" / f"iter_{iteration:03d}")
    return logp_shift(probe, before, trace_logps(policy, probe))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.update_shift", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training.run folder (its .hydra/, traces/ and checkpoints/)")
    parser.add_argument("iteration", type=int, help="the round (1 = the first update)")
    args = parser.parse_args(argv)
    for needed in (args.run / ".hydra" / "config.yaml", args.run / "traces" / f"iter_{args.iteration:03d}.jsonl",
                   args.run / "checkpoints" / f"iter_{args.iteration:03d}"):
        if not needed.exists():
            sys.exit(f"training.update_shift: {needed} does not exist")
    print(json.dumps(saved_round(args.run, args.iteration)))


if __name__ == "__main__":
    main()
