"""What XoT's guide cost on top of the LM, from `search.run` folders (a script, not a test).

    python -m search.run search=xot task=game24 task.split=tot eval.problems=30 save_trees=30 hydra.run.dir=R
    python -m benchmarks.xot_cost R [R2 ...]

Prints, per run folder, the strategy's answer accuracy and LM tokens from `metrics.json`,
and from the tree metas (`trees/iter_000/*.json`, so save `save_trees` >= the problems):
the guide's simulations, network states and FLOPs per problem, hint revisions, the share
of problems whose final hints solve the puzzle (what the guide alone would score), and the
one-off training cost of the cached guide.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def summary(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    metas = [json.loads(p.read_text(encoding="utf-8"))["meta"] for p in sorted((folder / "trees").rglob("*.json"))]
    row = {"run": folder.name, "strategy": metrics["strategy"], "problems": metrics["problems"],
           "answer_accuracy": metrics.get("answer_accuracy"), "pass@k": metrics.get("pass@k"), "tokens": metrics.get("tokens")}
    guides = [m["guide"] for m in metas if "guide" in m]
    if guides:
        row.update({
            "trees": len(guides),
            "guide_simulations": float(np.mean([g["simulations"] for g in guides])),
            "guide_states": float(np.mean([g["network_states"] for g in guides])),
            "guide_mflops": float(np.mean([g["network_flops"] for g in guides])) / 1e6,
            "revised": float(np.mean([g["revised"] for g in guides])),
            "hints_solve": float(np.mean([g["hints_solved"] > 0 for g in guides])),
            "training": {k: metas[0]["guide_training"][k] for k in ("simulations", "network_flops", "fit_flops",
                                                                     "wall_s", "parameters")},
        })
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        print(json.dumps(summary(folder)))


if __name__ == "__main__":
    main()
