"""Real Hydra composition of every config group, and the errors users see."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tasks.config import build_task, task_definition
from tasks.data import data_root

from composing import CONF, composed

GROUPS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml")) for group in ("task", "search", "trainer", "policy")}


def test_defaults_are_countdown_tiny_sampling_ei():
    cfg = composed()
    assert cfg.task._target_ == "tasks.countdown.Countdown"
    assert cfg.policy._target_ == "training.base_model.tiny_base"
    assert cfg.search._target_ == "search.sampling.Sampling"
    assert cfg.trainer._target_ == "training.ei.ExpertIteration"


@pytest.mark.parametrize("name", GROUPS["search"])
def test_every_strategy_instantiates_with_a_name(name):
    strategy = instantiate(composed(f"search={name}").search)
    assert isinstance(strategy.name, str) and strategy.name


def data_present(name):
    """Whether a task's default data (its `path`, under the data root) is on this machine."""
    path = OmegaConf.load(CONF / "task" / f"{name}.yaml").get("path")
    return path is None or (data_root() / path).exists()


@pytest.mark.parametrize("name", [n for n in GROUPS["task"] if data_present(n)])
def test_every_task_builds_and_ignores_the_run_limit(name):
    cfg = composed(f"task={name}", "task.limit=5")
    assert "limit" not in task_definition(cfg.task)
    task = build_task(cfg.task)
    assert task.step_stop


@pytest.mark.parametrize("name", GROUPS["trainer"])
def test_every_trainer_config_names_its_target(name):
    cfg = composed(f"trainer={name}")
    assert cfg.trainer._target_.startswith("training.")


def run_module(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_unknown_strategy_lists_the_choices_without_a_traceback(tmp_path):
    out = run_module("training.run", "search=nope", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert out.returncode != 0
    assert "Could not find 'search/nope'" in out.stderr
    for name in GROUPS["search"]:
        assert name in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_file_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    out = run_module("search.run", "task=gsm8k", f"task.path={missing}", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert out.returncode != 0
    assert str(missing) in out.stderr
