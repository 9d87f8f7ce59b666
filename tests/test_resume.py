"""A run killed with SIGKILL in the middle of an iteration and resumed ends exactly where
the same run left alone ends: same metrics (wall times aside) and the same weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tiny_run import RESUMABLE_RUN

ROOT = Path(__file__).resolve().parents[1]
TINY = ["iterations=3", *RESUMABLE_RUN]


def command(trainer: str, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.run", f"trainer={trainer}", *TINY, f"++policy.cache_dir={cache}",
            f"hydra.run.dir={run_dir}", *extra]


def run_to_end(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def kill_during_iteration_2(cmd: list[str], run_dir: Path) -> None:
    """Start the run and SIGKILL it once iteration 2's search has written its traces
    (iteration 1 is checkpointed, iteration 2 is being trained or evaluated)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not (run_dir / "traces" / "iter_002.jsonl").exists():
            if proc.poll() is not None:
                raise AssertionError(f"run ended before iteration 2: {proc.stderr.read()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert (run_dir / "checkpoints" / "iter_001" / "COMPLETE").exists()
    assert not (run_dir / "checkpoints" / "iter_002" / "COMPLETE").exists()


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if not k.endswith("_time")} for row in rows]


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "checkpoints" / "iter_003" / "model.safetensors")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bases")


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ei", "rcrl"])
def test_killed_and_resumed_run_matches_the_uninterrupted_run(trainer, tmp_path, cache):
    alone, killed = tmp_path / "alone", tmp_path / "killed"
    run_to_end(command(trainer, alone, cache))
    kill_during_iteration_2(command(trainer, killed, cache), killed)
    run_to_end(command(trainer, killed, cache, "resume=true"))

    assert metrics(killed) == metrics(alone)
    assert [r["iteration"] for r in metrics(alone)] == [0, 1, 1, 2, 2, 3, 3]
    a, b = weights(alone), weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name
    if trainer == "rcrl":  # trains on every trace, so the weights did move: the comparison has teeth
        first = load_file(alone / "checkpoints" / "iter_001" / "model.safetensors")
        assert any(not first[n].equal(a[n]) for n in a)
