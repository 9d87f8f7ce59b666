"""How a round's update moved the likelihood of that round's own traces, valid and invalid
apart: `logp_shift_valid` and `logp_shift_invalid` on every train row, the mean change of a
trace's summed log p (nats) from before the trainer's step to after it, over up to
`update_shift_traces` (256) traces of each kind drawn from the round's search. Valid is the verifier's
full reward (`trace_valid@k`'s judge): the traces EI keeps and a sparse reward pays. A trace
whose answer is right but whose steps are not (390 of round 1's 1,225 right answers on the
laboratory) is invalid: no trainer rewards it.

Why: two updates can move the policy equally far (the same `approx_kl`) and do opposite
things with it. On the plateau laboratory's first round (sampling, seed 0) EI raised its
valid traces by +0.82 nats a trace and lowered the invalid ones by 3.45; PPO lowered the
invalid ones by 1.2 and its valid ones too (-0.17; -0.14 at GAE lambda 1), GRPO moved them
by +0.06 and -0.75. A policy-gradient round there spends its update pushing failures down,
and the freed probability does not go to the traces it rewarded. The round's approx_kl,
entropy and accuracy do not show this; these two figures do.

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
from search.metrics import full_reward, trace_valid
from search.run_folder import RunFolder
from search.threads import use_threads
from training.checkpoint import COMPLETE
from training.seeding import derived_seed

SAVED_RUN_PROBE = 256  # per kind, for a saved run that logged no probe: saved before the key, or update_shift_traces=0

Judged = list[tuple[str, str, bool]]  # (prompt, trace text, valid): a round's traces, or the probe drawn from them


def round_traces(results: list[SearchResult]) -> Judged:
    """Every non-empty trace of a round's search, with whether it earned the full reward."""
    return [(r.tree.prompt, t.text, trace_valid(t)) for r in results for t in r.traces() if t.text]


def draw_probe(traces: Judged, per_kind: int, seed: int) -> Judged:
    """Up to `per_kind` valid and as many invalid traces, drawn with `seed` (the config's
    `update_shift_traces`: two teacher-forced passes over at most twice that a round; 0 draws
    none, and the figures are then None)."""
    rng = random.Random(seed)
    kinds = [[x for x in traces if x[2] == kind] for kind in (True, False)]
    return [x for kind in kinds for x in rng.sample(kind, min(per_kind, len(kind)))]


def trace_logps(policy: Policy, probe: Judged) -> list[float]:
    """Each probed trace's summed log p under `policy` as it stands."""
    if not probe:
        return []
    return [sum(row) for row in policy.logprobs([p for p, _, _ in probe], [t for _, t, _ in probe])]


def logp_shift(probe: Judged, before: list[float], after: list[float]) -> dict[str, float | None]:
    """Mean after - before per kind; None for a kind the round did not produce."""
    out: dict[str, float | None] = {}
    for key, kind in (("logp_shift_valid", True), ("logp_shift_invalid", False)):
        deltas = [a - b for (_, _, valid), b, a in zip(probe, before, after) if valid == kind]
        out[key] = statistics.fmean(deltas) if deltas else None
    return out


def saved_round(run: Path, iteration: int) -> dict[str, float | None]:
    """The figures of a saved run's round, from its traces file and the checkpoints around it
    (the run's base before round 1), with the probe the run itself would draw
    (`SAVED_RUN_PROBE` a kind for a run that logged none)."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    use_threads(cfg.get("threads"))  # the run's own: a base rebuilt into an empty cache must come out the same
    folder = RunFolder(run)
    rows = [json.loads(line) for line in folder.traces_file(iteration).read_text().splitlines()]
    traces = [(r["prompt"], r["completion"], full_reward(r["reward"])) for r in rows if r["completion"]]
    probe = draw_probe(traces, cfg.get("update_shift_traces") or SAVED_RUN_PROBE, derived_seed(cfg.seed, iteration, 3))
    policy = instantiate(cfg.policy)
    if iteration > 1:
        policy.update_weights(folder.checkpoint_dir(iteration - 1))
    before = trace_logps(policy, probe)
    policy.update_weights(folder.checkpoint_dir(iteration))
    return logp_shift(probe, before, trace_logps(policy, probe))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.update_shift", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training.run folder (its .hydra/, traces/ and checkpoints/)")
    parser.add_argument("iteration", type=int, help="the round (1 = the first update)")
    args = parser.parse_args(argv)
    config = args.run / ".hydra" / "config.yaml"
    if not config.exists():
        sys.exit(f"training.update_shift: {config} does not exist")
    folder = RunFolder(args.run)
    checkpoints = [folder.checkpoint_dir(i) / COMPLETE for i in (args.iteration - 1, args.iteration)
                   if i >= 1]  # save_checkpoint writes COMPLETE last
    for needed in (folder.traces_file(args.iteration), *checkpoints):
        if not needed.exists():
            sys.exit(f"training.update_shift: {needed} does not exist")
    print(json.dumps(saved_round(args.run, args.iteration)))


if __name__ == "__main__":
    main()
