"""How many torch threads one job uses, so that jobs sharing cores do not oversubscribe them.

Two torch pools as wide as the machine, on the same cores, slow each other down by an
order of magnitude (threads spin waiting for each other). A job therefore takes, in this
order: the `threads` config key; in a multirun, its share of the launcher's cores
(joblib: usable cores // n_jobs; Ray: the task's `num_cpus`; SLURM: `cpus_per_task`),
which knows how many jobs run side by side; `OMP_NUM_THREADS` when the environment sets
it; else every core this process may use. The choice is printed once at start, because
the thread count is part of what makes a run reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from search.console import say

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which SLURM and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launcher_share(launcher: Mapping[str, Any] | None, cores: int) -> tuple[int, str] | None:
    """(threads, why) for a job of a multirun `launcher` config, or None for a launcher
    that runs one job at a time on this machine."""
    launcher = launcher or {}
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        jobs = _integer(launcher.get("n_jobs")) or 1
        jobs = cores if jobs < 0 else jobs  # joblib: -1 = one job per core
        return max(1, cores // jobs), f"{cores} cores shared by {jobs} joblib jobs"
    if "ray" in target:
        cpus = _integer(((launcher.get("ray") or {}).get("remote") or {}).get("num_cpus"))
        return (max(1, cpus), f"num_cpus={cpus} per Ray task") if cpus else None
    if "submitit" in target:
        cpus = _integer(launcher.get("cpus_per_task"))
        return (max(1, min(cpus, cores)), f"cpus_per_task={cpus}") if cpus else None
    return None


def _integer(value: Any) -> int | None:
    """An int launcher setting, or None when it is unset or an unresolved interpolation."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pick_threads(requested: int | None, launcher: Mapping[str, Any] | None,
                 environ: Mapping[str, str] = os.environ, cores: int | None = None) -> tuple[int, str]:
    """(threads, why) by the rule of the module docstring."""
    cores = cores or usable_cores()
    if requested is not None:
        return requested, "threads from the config"
    share = launcher_share(launcher, cores)
    if share:
        return share
    env = environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env), "OMP_NUM_THREADS"
    return cores, f"all {cores} usable cores"


def hydra_launcher() -> Mapping[str, Any] | None:
    """The launcher config of the running Hydra multirun job, or None (single run, no Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return OmegaConf.to_container(HydraConfig.get().launcher, resolve=False)  # interpolations need the full config


def use_threads(requested: int | None) -> int:
    """Fix this process's thread count before torch loads (the environment variables its
    OpenMP pool reads) and after (torch.set_num_threads), and print it once."""
    threads, why = pick_threads(requested, hydra_launcher())
    for name in THREAD_VARS:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    say(f"threads: {threads} ({why}; the threads key overrides)")
    return threads
