"""Experiment tracking: the `logger` option, as TRL's `report_to` and verl's `trainer.logger`.

`metrics.jsonl` is the run's record and is always written (resume, plots and the report
read it); `logger=[jsonl]` (the default) adds nothing to it. `tensorboard` writes event
files to `<run>/tensorboard/`, `mlflow` a run in an MLflow store (default: a file store in
`<run>/mlruns/`); both work offline, and several can be listed: `logger=[jsonl,tensorboard,mlflow]`.

Every numeric value of every metrics row is logged, train and eval rows alike, at
step = `iteration`, under `<kind>/<key>` (`train/train_reward`, `eval/maj_at_1`): MLflow
refuses `@` in a name, so `@` is written `_at_` in every backend, and one key names one
curve everywhere. A null (NaN in the run, or not measured) is not logged. The resolved
config goes along: TensorBoard text `config`, MLflow artifact `config.yaml`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from search.run_folder import finite

INSTALL_HINT = 'pip install -e ".[tracking]"'


def metric_key(kind: str, name: str) -> str:
    """The one name a metric has in every backend: `eval/maj_at_1`."""
    return f"{kind}/{name.replace('@', '_at_')}"


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row's numeric values by tracking key, as metrics.jsonl holds them (`finite`:
    NaN and infinities are null there, so not logged); `iteration` is the step, not a metric."""
    row = finite(row)
    return {metric_key(row["kind"], k): float(v) for k, v in row.items()
            if k != "iteration" and isinstance(v, (int, float))}


class Backend(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def _require(module: str, option: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"logger={option} needs the {module} package: {INSTALL_HINT}")


class TensorBoardLogger:
    """Event files read by `tensorboard --logdir <run or sweep folder>`."""

    def __init__(self, root: str | Path, run_config: DictConfig, log_dir: str = "tensorboard"):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(root) / log_dir))
        self.writer.add_text("config", f"```\n{OmegaConf.to_yaml(run_config)}\n```")

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()  # a killed run keeps what it logged

    def close(self) -> None:
        self.writer.close()


class MLflowLogger:
    """One MLflow run per run folder: a resumed run logs into the run it started (found by
    the `plateau.run_dir` tag). The default file store is MLflow's offline backend; MLflow 3
    keeps it in maintenance mode behind MLFLOW_ALLOW_FILE_STORE, which is set for it here."""

    def __init__(self, root: str | Path, run_config: DictConfig, tracking_uri: str | None = None,
                 experiment: str = "plateau"):
        _require("mlflow", "mlflow")
        root = Path(root).resolve()
        uri = tracking_uri or (root / "mlruns").as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`plateau.run_dir` = '{root}'")
        if runs:
            self.run_id = runs[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=root.name,
                                                 tags={"plateau.run_dir": str(root)}).info.run_id
            self.client.log_dict(self.run_id, OmegaConf.to_container(run_config, resolve=True), "config.yaml")

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        at = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, at, step) for k, v in values.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Tracking:
    """The configured backends; `log(rows)` sends the rows not sent yet."""

    def __init__(self, backends: list[Backend], already_logged: int):
        self.backends = backends
        self.logged = already_logged

    def log(self, rows: list[dict[str, Any]]) -> None:
        for row in rows[self.logged:]:
            values = scalars(row)
            for backend in self.backends:
                backend.log(int(row["iteration"]), values)
        self.logged = len(rows)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def open_tracking(cfg: DictConfig, root: str | Path, already_logged: int = 0) -> Tracking:
    """Backends of `cfg.logger` (a mapping name -> backend config; `jsonl` is metrics.jsonl
    itself). Rows a resumed run logged before (`already_logged`) are not sent again."""
    selected = cfg.get("logger") or {}
    backends = [instantiate(spec, root=root, run_config=cfg, _recursive_=False) for name, spec in selected.items()
                if name != "jsonl" and spec is not None]
    return Tracking(backends, already_logged)
