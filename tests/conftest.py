"""Fixtures shared by several test modules."""

import pytest

from policies.tiny import build_tiny_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A randomly initialised 1M tiny Llama saved as a plain HF folder (weights + tokenizer)."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# A whole `training.run` small enough for a test: 2 problems, 1 iteration, 2x2 evaluation samples.
TINY_RUN = ["task.min_numbers=3", "task.max_numbers=3", "task.number_range=[1,5]", "task.target_range=[2,12]",
            "task.train_size=40", "task.test_size=4", "policy.sft_problems=8", "policy.sft.epochs=1",
            "policy.progress=false", "iterations=1", "train_problems=2", "eval.problems=2", "eval.k=2",
            "eval.max_new_tokens=24", "search.max_new_tokens=16", "health.nodes=2", "health.rollouts=2",
            "save_trees=0", "progress=false", "seed=3", "logger=[jsonl,tensorboard,mlflow]"]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The same tiny run twice, in two processes, with every tracking backend on. The first
    builds the base model into a fresh cache, the second loads it: a cached base must not
    change the run either."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("tiny_runs")
    env = {**os.environ, "PLATEAU_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = [root / "first", root / "second"]
    for run_dir in runs:
        proc = subprocess.run([sys.executable, "-m", "training.run", *TINY_RUN, f"hydra.run.dir={run_dir}"],
                              cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return runs
