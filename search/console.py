"""What a run prints besides its table: which job is speaking and whether bars may draw.

Under `-m` (a Hydra multirun) every line `say` prints starts with `[job N overrides]`,
Hydra's `job.num` and `job.override_dirname`, so the rows of jobs that run side by side
(`hydra/launcher=joblib2`) can be told apart. Jobs launched by anything but Hydra's basic
launcher (which runs them one after another) run beside each other, and two bars on one
terminal overwrite each other: `quiet_in_parallel` turns `progress` off there. Outside a
Hydra job (tests, notebooks) lines carry no label and bars follow `progress`.
"""

from __future__ import annotations

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


def _multirun_job() -> DictConfig | None:
    """Hydra's config of the current job when it is one job of a multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def job_label() -> str:
    """`[job 3 search=tot,trainer=ppo] ` inside a multirun job, else ``."""
    job = _multirun_job()
    if job is None:
        return ""
    overrides = job.job.override_dirname
    return f"[job {job.job.num}{' ' + overrides if overrides else ''}] "


def in_parallel_job() -> bool:
    """Whether this job may run beside others of its sweep (any launcher but the basic one)."""
    job = _multirun_job()
    return job is not None and not str(job.launcher.get("_target_", "")).endswith(".BasicLauncher")


def say(message: str) -> None:
    """Print `message`, each line behind the job label, in one write and flushed: jobs share
    the terminal, and a line written in pieces can be split by another job's line."""
    label = job_label()
    sys.stdout.write("".join(f"{label}{line}\n" for line in message.splitlines()))
    sys.stdout.flush()


def quiet_in_parallel(cfg: DictConfig) -> None:
    """Switch `cfg.progress` off in a parallel job; every bar reads it through `${progress}`."""
    if in_parallel_job() and cfg.get("progress"):
        cfg.progress = False
