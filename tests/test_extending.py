"""The worked extension example of docs/extending.md: a task, a strategy and a trainer
written outside the package (docs/examples/plugin), copied to a folder of their own and
run through `training.run` by `hydra.searchpath` and PYTHONPATH alone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "plugin"


@pytest.mark.slow
def test_a_task_strategy_and_trainer_from_outside_the_package_run_through_training_run(tmp_path):
    plugin = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLE, plugin)
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{ROOT}"}
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "training.run", f"hydra.searchpath=[file://{plugin / 'conf'}]", "task=sums",
         "search=until_solved", "trainer=shortest", "iterations=2", "train_problems=8", "eval.problems=6",
         "eval.k=2", "eval.max_new_tokens=60", "policy.sft_problems=200", "policy.sft.epochs=20",
         "budget.tokens_per_problem=400", f"++policy.cache_dir={tmp_path / 'bases'}", "progress=false",
         "health.nodes=0", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trains = [r for r in rows if r["kind"] == "train"]
    assert len(trains) == 2 and all(r["stop_budget"] + r["stop_size"] == 8 for r in trains)
    assert trains[-1]["examples"] >= trains[0]["examples"] > 0  # the trainer kept correct traces
    traces = [json.loads(line) for line in (run / "traces" / "iter_001.jsonl").read_text().splitlines()]
    assert {t["strategy"] for t in traces} == {"until_solved"}


def test_a_strategy_without_seed_is_refused_before_any_model_loads(tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "conf" / "search").mkdir(parents=True)
    (plugin / "seedless.py").write_text("class Seedless:\n    name = 'seedless'\n\n    def __init__(self, n: int = 1):\n"
                                        "        self.n = n\n")
    (plugin / "conf" / "search" / "seedless.yaml").write_text("_target_: seedless.Seedless\nn: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "training.run", f"hydra.searchpath=[file://{plugin / 'conf'}]", "search=seedless",
         f"hydra.run.dir={tmp_path / 'run'}", f"++policy.cache_dir={tmp_path / 'none'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{ROOT}"},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "search._target_=seedless.Seedless: its constructor must accept seed=" in done.stderr
    assert not (tmp_path / "none").exists()  # refused before the base model was built
