"""The viewer reads only a run's trees/ folder and writes its page atomically."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.view import load_trees, write_view

from viewer_trees import small_tree

ROOT = Path(__file__).resolve().parents[1]


def run_folder(root: Path, with_trees: bool) -> Path:
    """A run folder as training writes it: metrics, a checkpoint's HF config.json, maybe trees."""
    (root / "checkpoints" / "iter_001").mkdir(parents=True)
    (root / "checkpoints" / "iter_001" / "config.json").write_text('{"model_type": "llama"}')
    (root / "metrics.jsonl").write_text('{"iteration": 0, "kind": "eval"}\n')
    if with_trees:
        (root / "trees" / "iter_001").mkdir(parents=True)
        (root / "trees" / "iter_001" / "p1.json").write_text(small_tree("p1").dumps())
    return root


def test_only_the_trees_folder_of_a_run_is_read(tmp_path):
    run = run_folder(tmp_path / "run", with_trees=True)
    assert [label for label, _ in load_trees(run)] == ["iter_001/p1"]


def test_a_run_without_trees_is_one_line_naming_the_trees_folder_and_exit_2(tmp_path):
    run = run_folder(tmp_path / "run", with_trees=False)  # iterations=0 or save_trees=0 write none
    done = subprocess.run([sys.executable, "-m", "search.view", str(run)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {run}: no tree files (looked for {run}/trees/**/*.json)"]


def test_the_page_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    run = run_folder(tmp_path / "run", with_trees=True)
    page = write_view(run)[0]
    first = page.read_text()

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    (run / "trees" / "iter_001" / "p2.json").write_text(small_tree("p2").dumps())
    with pytest.raises(OSError, match="disk full"):
        write_view(run)
    assert page.read_text() == first
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.jsonl", "tree_viewer.html", "trees"]
