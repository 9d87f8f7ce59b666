"""Checkpoints read without unpickling code, resume walking back past broken ones, and the
edge runs: a finished run resumed, iterations=0, and metrics files strict JSON readers accept."""

import copy
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget, SearchResult, SearchTree
from search.run_folder import RunFolder
from search.sampling import Sampling
from tasks.countdown import Countdown
from training.checkpoint import (STATE, CheckpointError, read_checkpoint, resume, rng_state, save_checkpoint,
                                 set_rng_state)
from training.ei import ExpertIteration
from training.grpo import GRPO
from training.orm import ORMTraining
from training.ppo import PPO
from training.rcrl import RCRL

from tiny_run import RESUMABLE_RUN

ROOT = Path(__file__).resolve().parents[1]
TINY = ["iterations=2", "update_shift_traces=0", *RESUMABLE_RUN]  # no probe: these runs test the edges


def train(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "training.run", *TINY, f"++policy.cache_dir={cache}", f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def lines(done: subprocess.CompletedProcess, start: str) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith(start)]


def strict_rows(path: Path) -> list[dict]:
    """Every line of a metrics file parsed the way strict readers (JSON.parse) parse it."""
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bases")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache):
    """A finished two-iteration EI run (in a subprocess, as a user starts it) whose untrained base finds no correct trace (EI's loss is NaN)."""
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    done = train(run_dir, cache)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow  # a real training run in a subprocess (~20 s on a busy machine)
def test_metrics_hold_null_where_the_loss_was_nan(finished):
    rows = strict_rows(finished / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1, 1, 2, 2]
    assert [r["loss"] for r in rows if r["kind"] == "train"] == [None, None]  # no correct trace: nothing to fit
    assert {r["logp_shift_invalid"] for r in rows if r["kind"] == "train"} == {None}  # update_shift_traces=0: off


def test_write_metrics_turns_nan_inf_and_numpy_scalars_into_strict_json(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_metrics([{"loss": float("nan"), "ratio": float("-inf"), "mean": np.float32(0.5), "n": np.int64(3)}])
    assert strict_rows(folder.metrics_path) == [{"loss": None, "ratio": None, "mean": 0.5, "n": 3}]


def truncate_weights(ckpt: Path) -> str:
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    return "model.safetensors is truncated or corrupt ("


def garbage_state(ckpt: Path) -> str:
    (ckpt / STATE).write_bytes(b"\x00garbage" * 100)
    return f"{STATE} is not a readable torch file ("


def delete_weights(ckpt: Path) -> str:
    (ckpt / "model.safetensors").unlink()
    return "model.safetensors is missing (no model weights)"


@pytest.mark.slow  # a real training run in a subprocess (~20 s on a busy machine)
@pytest.mark.parametrize("corrupt", [truncate_weights, garbage_state, delete_weights])
def test_resume_skips_a_broken_last_checkpoint_and_continues_from_the_one_before(finished, cache, tmp_path, corrupt):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    reason = corrupt(run_dir / "checkpoints" / "iter_002")
    done = train(run_dir, cache, "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = lines(done, "resume: skipping")
    assert len(skipped) == 1 and skipped[0].startswith(f"resume: skipping {run_dir}/checkpoints/iter_002: {reason}")
    assert lines(done, "resume: continuing") == [f"resume: continuing from {run_dir}/checkpoints/iter_001 (iteration 1)"]
    assert [r["iteration"] for r in strict_rows(run_dir / "metrics.jsonl")] == [0, 1, 1, 2, 2]
    assert read_checkpoint(run_dir / "checkpoints" / "iter_002")["iteration"] == 2  # redone and rewritten


@pytest.mark.slow  # a real training run in a subprocess (~20 s on a busy machine)
def test_resume_with_no_loadable_checkpoint_starts_from_iteration_0(finished, cache, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    truncate_weights(run_dir / "checkpoints" / "iter_002")
    garbage_state(run_dir / "checkpoints" / "iter_001")
    done = train(run_dir, cache, "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(lines(done, "resume: skipping")) == 2
    assert lines(done, "resume: no checkpoint") == [
        f"resume: no checkpoint in {run_dir}/checkpoints loads; starting from iteration 0"]
    assert [r["iteration"] for r in strict_rows(run_dir / "metrics.jsonl")] == [0, 1, 1, 2, 2]


@pytest.mark.slow  # a real training run in a subprocess (~20 s on a busy machine)
def test_resuming_a_finished_run_says_so_and_changes_nothing(finished, cache, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = (run_dir / "metrics.jsonl").read_text()
    done = train(run_dir, cache, "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines(done, "resume: the run") == [
        f"resume: the run in {run_dir} already finished iteration 2 of iterations=2; nothing to do "
        "(raise iterations to continue it)"]
    assert (run_dir / "metrics.jsonl").read_text() == before


@pytest.mark.slow  # a real training run in a subprocess (~20 s on a busy machine)
def test_iterations_0_evaluates_the_base_and_exits_cleanly(cache, tmp_path):
    done = train(tmp_path / "run", cache, "iterations=0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(lines(done, "threads: ")) == 1
    assert [r["iteration"] for r in strict_rows(tmp_path / "run" / "metrics.jsonl")] == [0]
    assert not (tmp_path / "run" / "trees").exists() and "Traceback" not in done.stderr


# ------------------------------------------------------------------ every trainer's state

TASK = dict(min_numbers=2, max_numbers=2, number_range=(1, 4), target_range=(1, 16), train_size=20, test_size=2,
            reference_count=2)
SFT = {"epochs": 1, "batch_size": 4}
TRAINERS = {
    "ei": lambda policy: ExpertIteration(sft=SFT, reset_each_round=False),
    "rcrl": lambda policy: RCRL(sft=SFT, reset_each_round=False),
    "ppo": lambda policy: PPO(lr=1e-3, minibatch_size=8, critic="separate"),
    "grpo": lambda policy: GRPO(lr=1e-3, minibatch_size=8, kl_coef=0.1),
    "orm": lambda policy: ORMTraining(policy, backbone="tiny", train={"epochs": 1, "batch_size": 8}, seed=0),
}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", list(TRAINERS))
def test_every_trainer_state_round_trips_through_a_checkpoint_read_with_weights_only(name, tmp_path):
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy, task = HFPolicy(model, tokenizer), Countdown(**TASK)
    results = Sampling(n=4, max_new_tokens=32, seed=1).search(task.problems("train", limit=4, seed=0), policy, task,
                                                              Budget())
    for r in results:  # one correct trace per problem, so EI and RCRL have data to fit
        r.tree.add_child(0, task.reference_traces(r.problem)[0], terminal=True, reward=1.0)
    trainer = TRAINERS[name](policy)
    if name == "orm":
        trainer.fit(1, results)
    else:
        trainer.setup(policy, task)
        trainer.step(1, results)
    expected = copy.deepcopy(trainer.state_dict())
    assert expected["optimizer"]["state"]  # an optimizer that has stepped: the round trip has teeth
    save_checkpoint(RunFolder(tmp_path), 1, policy, trainer, [{"iteration": 0, "loss": float("nan")}])
    state = read_checkpoint(tmp_path / "checkpoints" / "iter_001")
    assert same(state["trainer"], expected)
    assert state["metrics"] == [{"iteration": 0, "loss": None}]


def test_base_and_reference_weights_are_rebuilt_at_setup_not_stored():
    """EI's reset base and the KL reference are the iteration-0 policy, which `training.run`
    builds again before resuming (and `setup` copies), so the trainer state holds neither;
    only ProRL's resets make the reference a later policy, and then it is stored."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy, task = HFPolicy(model, tokenizer), Countdown(**TASK)
    results = [reference_result(task, p) for p in task.problems("train", limit=4, seed=0)]
    trainers = {"ei": ExpertIteration(sft=SFT), "grpo": GRPO(lr=1e-3, minibatch_size=8, kl_coef=0.1),
                "prorl": GRPO(lr=1e-3, minibatch_size=8, kl_coef=0.1, reset_reference_every=1)}
    stored = {}
    for name, trainer in trainers.items():
        trainer.setup(policy, task)
        trainer.step(1, results)
        stored[name] = sorted(trainer.state_dict())
    assert stored == {"ei": ["dataset", "optimizer"], "grpo": ["critic", "optimizer"],
                      "prorl": ["critic", "optimizer", "reference"]}


def test_rng_state_restores_python_numpy_and_torch_draws_after_a_weights_only_load(tmp_path):
    torch.save(rng_state(), tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# ------------------------------------------------------------------ walking back, in process


def reference_result(task, problem):
    """A depth-1 tree holding the problem's correct reference trace (data EI fits)."""
    tree = SearchTree(problem.id, task.prompt(problem), strategy="fixed")
    text = task.reference_traces(problem)[0]
    tree.add_child(0, text, terminal=True, reward=1.0, answer=task.extract_answer(text))
    return SearchResult(problem, tree, tokens=0, calls=1, wall_time=0.0)


def ei_on_a_fresh_policy():
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer)
    trainer = TRAINERS["ei"](policy)
    trainer.setup(policy, Countdown(**TASK))
    return policy, trainer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run folder with checkpoints iter_001 and iter_002 of an EI trainer that has stepped."""
    policy, trainer = ei_on_a_fresh_policy()
    task = Countdown(**TASK)
    results = [reference_result(task, p) for p in task.problems("train", limit=4, seed=0)]
    folder = RunFolder(tmp_path_factory.mktemp("saved"))
    for iteration in (1, 2):
        trainer.step(iteration, results)
        save_checkpoint(folder, iteration, policy, trainer, [{"iteration": iteration}])
    return folder.root


@pytest.mark.parametrize("corrupt", [truncate_weights, garbage_state, delete_weights])
def test_resume_walks_back_past_a_broken_checkpoint_naming_file_and_reason(saved, tmp_path, capsys, corrupt):
    root = tmp_path / "run"
    shutil.copytree(saved, root)
    reason = corrupt(root / "checkpoints" / "iter_002")
    policy, trainer = ei_on_a_fresh_policy()
    assert resume(RunFolder(root), policy, trainer) == (1, [{"iteration": 1}])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(f"resume: skipping {root}/checkpoints/iter_002: {reason}")
    assert out[1] == f"resume: continuing from {root}/checkpoints/iter_001 (iteration 1)"
    restored = load_file(root / "checkpoints" / "iter_001" / "model.safetensors")
    assert all(torch.equal(restored[k], v) for k, v in policy.model.state_dict().items() if k in restored)


def test_resume_with_every_checkpoint_broken_starts_over_and_leaves_the_policy_untouched(saved, tmp_path, capsys):
    root = tmp_path / "run"
    shutil.copytree(saved, root)
    truncate_weights(root / "checkpoints" / "iter_002")
    delete_weights(root / "checkpoints" / "iter_001")
    policy, trainer = ei_on_a_fresh_policy()
    initial = copy.deepcopy(policy.model.state_dict())
    assert resume(RunFolder(root), policy, trainer) == (0, [])
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"resume: no checkpoint in {root}/checkpoints loads; starting from iteration 0"
    assert len(out) == 3 and all(line.startswith("resume: skipping") for line in out[:2])
    assert all(torch.equal(initial[k], v) for k, v in policy.model.state_dict().items())


def test_a_trainer_state_that_needs_unpickling_is_refused(saved, tmp_path):
    ckpt = tmp_path / "iter_001"
    shutil.copytree(saved / "checkpoints" / "iter_001", ckpt)
    state = torch.load(ckpt / STATE, weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # an ndarray: torch can only unpickle it by running numpy code
    torch.save(state, ckpt / STATE)
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain data"):
        read_checkpoint(ckpt)
