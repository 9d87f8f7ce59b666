"""Synthetic laboratory sweeps for the report's tests: real `.hydra/config.yaml` and
`metrics.jsonl` files whose eval rows carry what `training.lab_eval` writes, the pass@k
keys computed by the real estimator from hand-chosen per-problem correct counts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from training.instruments import pass_at_k_curve, powers_of_two

SAMPLES = 64  # samples per problem: pass@1 = correct / 64, pass@64 = 1 if any correct


def lab(in_correct: list[int], beyond_correct: list[int], coverage: float = 0.5, novel: float = 0.0) -> dict:
    """The laboratory keys of one eval row from each problem's number of correct samples."""
    counts = [(SAMPLES, c, "in_support") for c in in_correct] + [(SAMPLES, c, "beyond_support") for c in beyond_correct]
    ks = powers_of_two(SAMPLES)
    row: dict = {"lab_counts": [list(c) for c in counts], "entropy": 0.1, "base_nll": 0.2}
    for name in ("all", "in_support", "beyond_support"):
        members = [(n, c) for n, c, s in counts if name in ("all", s)]
        if not members:
            continue
        row.update({f"{name}/pass@{k}": v for k, v in zip(ks, pass_at_k_curve(members, ks))})
        row.update({f"{name}/coverage": coverage, f"{name}/novel_correct": novel, f"{name}/problems": len(members)})
    return row


def lab_job(sweep: Path, num: int, strategy: str, trainer: str, seed: int, maj1: list[float],
            labs: list[dict] | None = None, reward: str = "sparse", init: str = "pretrained_sft",
            tokens_per_iteration: int = 1000, spent: float = 1.0) -> Path:
    """A complete job: eval rows at iterations 0..len(maj1)-1 (maj@1, and `labs[i]` when
    given), a train row before each later one (`spent`: its spent_fraction_mean)."""
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    cfg = {"search": {"name": strategy}, "trainer": {"name": trainer, "reward": reward}, "policy": {"init": init},
           "seed": seed, "iterations": len(maj1) - 1, "eval": {"k": 8}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    for it, m in enumerate(maj1):
        tokens = it * tokens_per_iteration
        if it:
            rows.append({"iteration": it, "kind": "train", "cumulative_tokens": tokens, "train_reward": 0.5,
                         "n_traces": 10, "traces_dropped": 0,
                         "spent_fraction_mean": spent, "spent_fraction_min": spent})
        rows.append({"iteration": it, "kind": "eval", "cumulative_tokens": tokens, "maj@1": m, "maj@k": m,
                     "pass@k": min(1.0, m + 0.2), "k": 8, **(labs[it] if labs else {})})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


class Sweep:
    """Numbers job folders in one sweep folder."""

    def __init__(self, path: Path) -> None:
        self.path, self.jobs = path, 0

    def add(self, strategy: str, trainer: str, seed: int, maj1: list[float], **kw) -> Path:
        self.jobs += 1
        return lab_job(self.path, self.jobs - 1, strategy, trainer, seed, maj1, **kw)
