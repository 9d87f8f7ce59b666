"""Job labels and quiet bars, under a real Hydra multirun of a one-line app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = '''
import hydra
from omegaconf import OmegaConf
from search.console import quiet_in_parallel, say

@hydra.main(config_path=None, version_base="1.3")
def main(cfg):
    cfg = OmegaConf.merge({"progress": True}, cfg)
    quiet_in_parallel(cfg)
    say(f"progress={cfg.progress}\\nsecond line")

main()
'''
ROOT = Path(__file__).resolve().parents[1]


def run_app(tmp_path: Path, *args: str) -> list[str]:
    (tmp_path / "app.py").write_text(APP)
    proc = subprocess.run([sys.executable, str(tmp_path / "app.py"), *args, f"hydra.sweep.dir={tmp_path / 'm'}",
                           f"hydra.run.dir={tmp_path / 'r'}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "progress=" in line or "second line" in line]


def test_a_single_run_prints_no_label_and_keeps_its_bars(tmp_path: Path) -> None:
    assert run_app(tmp_path, "+x=1") == ["progress=True", "second line"]


def test_jobs_run_one_after_another_are_labelled_and_keep_their_bars(tmp_path: Path) -> None:
    assert run_app(tmp_path, "-m", "+x=1,2") == ["[job 0 +x=1] progress=True", "[job 0 +x=1] second line",
                                                 "[job 1 +x=2] progress=True", "[job 1 +x=2] second line"]


def test_parallel_jobs_are_labelled_and_draw_no_bars(tmp_path: Path) -> None:
    lines = run_app(tmp_path, "-m", "+x=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert sorted(lines) == ["[job 0 +x=1] progress=False", "[job 0 +x=1] second line",
                             "[job 1 +x=2] progress=False", "[job 1 +x=2] second line"]


def test_a_failing_sweep_job_says_so_when_it_fails_not_after_the_last_job(tmp_path):
    """Hydra keeps a multirun job's exception until every job has ended; training.run
    prints one line per failed job as it fails, so a long sweep is not silently broken."""
    proc = subprocess.run([sys.executable, "-m", "training.run", "-m", "policy.init=bogus,bogus2", "iterations=0",
                           f"hydra.sweep.dir={tmp_path / 'm'}"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode != 0
    lines = proc.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if "job failed, the sweep goes on" in line]
    assert len(failed) == 2, proc.stdout[-2000:]
    assert "[job 0 iterations=0,policy.init=bogus]" in lines[failed[0]] and "policy.init='bogus'" in lines[failed[0]]
    second_starts = next(i for i, line in enumerate(lines) if line.startswith("[job 1 "))
    assert failed[0] < second_starts  # reported when it failed, before the next job ran
