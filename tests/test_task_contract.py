"""What every task gets from the framework and owes it: `task.limit` accepted by any task
config, data paths independent of the working directory, one split rule, and text the
tiny tokenizer can write."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import tasks
from tasks.arith import Arith
from tasks.config import RUN_KEYS, build_task, task_definition
from tasks.countdown import Countdown
from tasks.data import data_path, data_root
from tasks.game24 import Game24
from tasks.gsm8k import GSM8K
from training.base_model import tiny_base

from composing import CONF, composed

ROW = {"question": "Tom has 2 apples and buys 3. How many now?", "answer": "2+3 = <<2+3=5>>5\n#### 5"}
CURLY = {**ROW, "question": "Tom\u2019s 2 apples and 3 more: how many?"}


def write_gsm8k(folder: Path, *rows: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


# ---- task.limit ------------------------------------------------------------------------


def test_a_task_yaml_without_limit_accepts_task_limit(tmp_path):
    """A task written outside the package declares only its own keys; `task.limit` still works."""
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "mine.yaml").write_text("_target_: tasks.arith.Arith\ntrain_size: 5\ntest_size: 2\n")
    cfg = composed(f"hydra.searchpath=[file://{tmp_path}]", "task=mine", "task.limit=5")
    assert cfg.task.limit == 5
    assert task_definition(cfg.task) == {"_target_": "tasks.arith.Arith", "train_size": 5, "test_size": 2}
    assert isinstance(build_task(cfg.task), Arith)


def test_the_contract_yaml_and_run_keys_agree():
    assert set(OmegaConf.load(CONF / "task_contract.yaml")) == set(RUN_KEYS)
    for path in (CONF / "task").glob("*.yaml"):  # one place declares them
        assert not set(OmegaConf.load(path)) & set(RUN_KEYS), path.name


# ---- data paths ------------------------------------------------------------------------


def test_relative_paths_are_read_under_the_data_root_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("PLATEAU_DATA", raising=False)
    assert data_root() == Path(tasks.__file__).resolve().parents[2] / "shared" / "data"
    write_gsm8k(tmp_path / "data" / "gsm8k", ROW)
    monkeypatch.setenv("PLATEAU_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path / "data" / "gsm8k")  # where "gsm8k" would NOT resolve relative to the cwd
    task = GSM8K(path="gsm8k")
    assert task.path == tmp_path / "data" / "gsm8k" and task.problems("test")[0].answer == "5"
    assert data_path(tmp_path / "data" / "gsm8k", "gsm8k") == tmp_path / "data" / "gsm8k"  # absolute: as given


def test_a_missing_path_fails_when_the_task_is_built_naming_task_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATEAU_DATA", str(tmp_path))
    for build in (lambda: GSM8K(path="gsm8k"), lambda: Game24(path="game24")):
        with pytest.raises(FileNotFoundError, match=rf"^task\.path: .* not found at {tmp_path}/"):
            build()


def run_module(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**env, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_search_run_reports_a_missing_path_under_task_path_before_the_policy(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    command = [sys.executable, "-m", "search.run", "task=gsm8k", "task.path=nope", f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path / "elsewhere", timeout=120,
                         env={"PLATEAU_DATA": str(tmp_path), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "full_key: policy" not in out.stderr and "Traceback" not in out.stderr
    assert f"task.path: gsm8k data 'nope' not found at {tmp_path / 'nope'}" in out.stderr


def test_tiny_base_refuses_text_outside_its_alphabet_before_training(tmp_path, monkeypatch):
    """The tokenizer would write a curly quote as <unk>; the base build stops in one line instead."""
    monkeypatch.setenv("PLATEAU_DATA", str(tmp_path))
    write_gsm8k(tmp_path / "gsm8k", ROW, CURLY)
    with pytest.raises(ValueError, match=r"^task gsm8k: problem gsm8k-train-00002 has characters the tiny tokenizer "
                                         r"cannot write: '’' \(U\+2019\); its alphabet is printable ASCII"):
        tiny_base({"_target_": "tasks.gsm8k.GSM8K", "path": "gsm8k"}, cache_dir=str(tmp_path / "cache"), progress=False)
    assert not (tmp_path / "cache").exists()


# ---- splits ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", [Countdown(train_size=3, test_size=2), Arith(train_size=3, test_size=2),
                                  Game24(train_size=2, test_size=1)], ids=lambda t: t.name)
def test_every_task_names_its_splits_in_one_error(task):
    known = "['test', 'tot', 'train']" if task.name == "game24" else "['test', 'train']"
    with pytest.raises(ValueError) as error:
        task.problems("dev")
    assert str(error.value) == f"unknown split 'dev' for task {task.name}; known: {known}"
    assert task.problems("train", limit=2, seed=1) == task.problems("train", limit=2, seed=1)
    assert len(task.problems("train", limit=2)) == 2
