"""Same seed, same machine, same thread count: the same run. Two processes run the same tiny
`training.run` config (search, EI training, evaluation, checkpoint); every metrics row and
every trace must be identical -- only wall times (keys ending in `_time`) may differ. What is and is not
deterministic across machines: docs/reproducibility.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest



def rows_without_times(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("_time")} for row in rows]


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics_and_traces(tiny_runs):
    first, second = tiny_runs
    rows = rows_without_times(first)
    assert [(r["iteration"], r["kind"]) for r in rows] == [(0, "eval"), (1, "train"), (1, "eval")]
    assert rows == rows_without_times(second)
    train = json.loads((first / "metrics.jsonl").read_text().splitlines()[1])
    assert train["search_time"] > 0 and train["update_time"] > 0  # the round's two parts ...
    assert train["search_time"] + train["update_time"] == pytest.approx(train["train_time"])  # ... add up to it
    assert train["logp_shift_invalid"] is not None and "logp_shift_valid" in train  # training.update_shift
    traces = sorted(p.relative_to(first) for p in (first / "traces").glob("*.jsonl"))
    assert traces, "the run wrote no traces"
    for path in traces:
        text = (first / path).read_text()
        assert text.count("\n") == rows[1]["n_traces"] > 0
        assert text == (second / path).read_text(), path


@pytest.mark.slow
def test_a_saved_round_gives_back_the_update_shift_its_run_logged(tiny_runs):
    """`python -m training.update_shift RUN 1` (for runs saved before the figure existed)
    rebuilds the same probe from the traces file and scores it with the base and checkpoint."""
    first = tiny_runs[0]
    env = {**os.environ, "PLATEAU_CACHE": str(first.parent / "cache"), "OMP_NUM_THREADS": "1"}
    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-m", "training.update_shift", str(first), "1"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    logged = json.loads((first / "metrics.jsonl").read_text().splitlines()[1])
    again = json.loads(done.stdout.splitlines()[-1])
    for key in ("logp_shift_valid", "logp_shift_invalid"):
        assert (again[key] is None) == (logged[key] is None) and again[key] == pytest.approx(logged[key], abs=1e-4), key
    missing = subprocess.run([sys.executable, "-m", "training.update_shift", str(first), "9"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and missing.stderr.strip().endswith("iter_009.jsonl does not exist")
