"""Reading finished run folders: a run's metrics rows and Hydra choices, and every job of
one or more sweeps as a `Run` (what the report pools and the plots draw).

A cell is (strategy, trainer label). The label keeps variants of one trainer apart, so
that they never pool into one mean: `ppo+dense` when `trainer.reward` is not sparse,
`ei@pretrained` when `policy.init` is `pretrained` (the paper's "pretrained
initialisation"; `sft` and `pretrained_sft` are SFT initialisations and keep the plain name),
and `ppo+neg0.2` when `trainer.negative_weight` is not 1 and the trainer has no `name` of its
own (a named trainer, `lab_arm=ppo_asym`'s `ppo+asym`, is labelled by its name).

`metrics.jsonl` is written by the training loop (`search.run_folder.RunFolder`); the
metric names whose values must be numbers are the loop's, so reading lives here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tasks.data import jsonl_rows

GROUPS = ("task", "policy", "search", "trainer")  # the config groups a run title names

NUMERIC_KEYS = frozenset({"iteration", "cumulative_tokens", "k", "eval_tokens", "search_tokens", "n_traces", "loss",
                          "maj@1", "maj@k", "pass@k", "pass@1", "rerank@k", "trace_valid@k", "distinct_correct",
                          "train_reward"})


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file; blank lines are skipped, anything else that is not
    a JSON object with numeric metric values raises ValueError naming file and line."""
    rows = []
    for n, row in jsonl_rows(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, found {type(row).__name__}")
        for key in NUMERIC_KEYS & row.keys():
            if row[key] is not None and not is_number(row[key]):
                raise ValueError(f"{path}:{n}: {key!r} must be a number, found {row[key]!r}")
        rows.append(row)
    return rows


def run_choices(run_dir: str | Path) -> dict[str, str]:
    """The task, policy, search and trainer choices Hydra recorded for a run folder
    (`.hydra/hydra.yaml`), and its seed (`.hydra/config.yaml`); {} where Hydra wrote neither."""
    hydra_dir = Path(run_dir) / ".hydra"
    choices: dict[str, str] = {}
    if (hydra_dir / "hydra.yaml").is_file():
        recorded = OmegaConf.load(hydra_dir / "hydra.yaml")
        runtime = OmegaConf.to_container(OmegaConf.select(recorded, "hydra.runtime.choices", default={}) or {})
        choices = {g: str(runtime[g]) for g in GROUPS if isinstance(runtime.get(g), str)}
    if (hydra_dir / "config.yaml").is_file():
        seed = OmegaConf.select(OmegaConf.load(hydra_dir / "config.yaml"), "seed", default=None,
                                throw_on_resolution_failure=False)
        if seed is not None:
            choices["seed"] = str(seed)
    return choices


@dataclass
class Run:
    """One job of the sweep. `problem` is None for a complete run, else why it is left out."""

    path: Path
    strategy: str = "?"
    trainer: str = "?"
    seed: Any = None
    reward: str | None = None  # trainer.reward: sparse / dense / orm (None: the trainer has no such choice)
    init: str | None = None  # policy.init: sft / pretrained / pretrained_sft
    negative_weight: float | None = None  # trainer.negative_weight of an unnamed trainer (None: 1, or named)
    evals: list[dict[str, Any]] = field(default_factory=list)
    trains: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    @property
    def label(self) -> str:
        """The trainer as the report names it: `ppo`, `ppo+dense`, `ei@pretrained`, `ppo+neg0.2`."""
        reward = f"+{self.reward}" if self.reward not in (None, "sparse") else ""
        weight = f"+neg{self.negative_weight:g}" if self.negative_weight is not None else ""
        return f"{self.trainer}{reward}{weight}{'@pretrained' if self.init == 'pretrained' else ''}"

    @property
    def cell(self) -> tuple[str, str]:
        return self.strategy, self.label

    def summary(self, key: str, how: str) -> float | None:
        values = [r[key] for r in self.evals if is_number(r.get(key))]
        if not values:
            return None
        return {"base": values[0], "final": values[-1], "best": max(values)}[how]

    def at(self, key: str, iteration: int) -> Any:
        """`key` of the evaluation at `iteration` (None where there is none)."""
        return next((r.get(key) for r in self.evals if r["iteration"] == iteration), None)


def _group_name(cfg: DictConfig, choices: dict[str, Any], group: str) -> str:
    """The name a person knows a config group choice by: its `name`, the choice Hydra
    recorded, or the class of its `_target_`."""
    name = OmegaConf.select(cfg, f"{group}.name", default=None, throw_on_resolution_failure=False)
    if isinstance(name, str):
        return name
    if isinstance(choices.get(group), str):
        return choices[group]
    target = OmegaConf.select(cfg, f"{group}._target_", default=None, throw_on_resolution_failure=False)
    return str(target).rsplit(".", 1)[-1] if target else "?"


def read_run(job: Path) -> Run:
    """A job folder as a `Run`; never raises: what is wrong with it goes into `problem`."""
    run = Run(job)
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        hydra_file = job / ".hydra" / "hydra.yaml"
        choices = {}
        if hydra_file.is_file():
            recorded = OmegaConf.to_container(OmegaConf.load(hydra_file))
            choices = recorded.get("hydra", {}).get("runtime", {}).get("choices", {})
    except Exception as e:  # noqa: BLE001 - any unreadable config is reported, not raised
        run.problem = f"unreadable .hydra config ({type(e).__name__}: {e})"
        return run
    run.strategy, run.trainer = _group_name(cfg, choices, "search"), _group_name(cfg, choices, "trainer")
    run.seed = OmegaConf.select(cfg, "seed", default=None, throw_on_resolution_failure=False)
    for attr, key in (("reward", "trainer.reward"), ("init", "policy.init")):
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        setattr(run, attr, None if value is None else str(value))
    weight = OmegaConf.select(cfg, "trainer.negative_weight", default=None, throw_on_resolution_failure=False)
    named = isinstance(OmegaConf.select(cfg, "trainer.name", default=None, throw_on_resolution_failure=False), str)
    if is_number(weight) and weight != 1 and not named:
        run.negative_weight = float(weight)
    metrics = job / "metrics.jsonl"
    if not metrics.is_file():
        run.problem = "crashed: no metrics.jsonl"
        return run
    try:
        rows = read_metrics(metrics)
    except ValueError as e:
        run.problem = f"unreadable metrics: {e}"
        return run
    run.evals = sorted((r for r in rows if r.get("kind") == "eval" and isinstance(r.get("iteration"), int)),
                       key=lambda r: r["iteration"])
    run.trains = [r for r in rows if r.get("kind") == "train"]
    expected = OmegaConf.select(cfg, "iterations", default=None, throw_on_resolution_failure=False)
    last = run.evals[-1]["iteration"] if run.evals else None
    if last is None:
        run.problem = "crashed: no evaluation in metrics.jsonl"
    elif isinstance(expected, int) and last < expected:
        run.problem = f"incomplete: last evaluation at iteration {last} of {expected}"
    return run


def collect_runs(*sweep_dirs: str | Path) -> list[Run]:
    """Every Hydra job folder (one holding `.hydra/config.yaml`) below each of `sweep_dirs`,
    pooled: several sweeps of one study (e.g. the strategy grid and the fidelity grid) report
    as one. A job found twice (a sweep passed twice, or nested in another) counts once."""
    if not sweep_dirs:
        raise ValueError("no sweep folder given")
    jobs: dict[Path, Path] = {}  # resolved path -> the path as found
    for sweep_dir in map(Path, sweep_dirs):
        found = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")})
        if not found:
            raise FileNotFoundError(f"{sweep_dir}: no Hydra job folders (looked for */.hydra/config.yaml)")
        for job in found:
            jobs.setdefault(job.resolve(), job)
    return [read_run(job) for job in jobs.values()]


def pass_ks(rows: list[dict[str, Any]], slice_name: str = "all") -> list[int]:
    """The k of every `<slice>/pass@<k>` key the rows carry, ascending ([] without lab metrics)."""
    prefix = f"{slice_name}/pass@"
    return sorted({int(key[len(prefix):]) for r in rows for key in r
                   if key.startswith(prefix) and key[len(prefix):].isdigit()})


def complete_cells(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """The complete runs grouped by (strategy, trainer label) cell, cells in sorted order."""
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.problem is None:
            cells[run.cell].append(run)
    return dict(sorted(cells.items()))
