"""Fixtures shared by several test modules."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from policies.tiny import build_tiny_model
from tiny_run import TINY_RUN


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A randomly initialised 1M tiny Llama saved as a plain HF folder (weights + tokenizer)."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The same tiny run twice, in two processes, with every tracking backend on. The first
    builds the base model into a fresh cache, the second loads it: a cached base must not
    change the run either."""
    root = tmp_path_factory.mktemp("tiny_runs")
    env = {**os.environ, "PLATEAU_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = [root / "first", root / "second"]
    overrides = [*TINY_RUN, "seed=3", "logger=[jsonl,tensorboard,mlflow]"]
    for run_dir in runs:
        proc = subprocess.run([sys.executable, "-m", "training.run", *overrides, f"hydra.run.dir={run_dir}"],
                              cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return runs
