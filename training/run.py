"""Hydra entry point: `python -m training.run task=countdown policy=tiny search=sampling trainer=ei`.

Nothing heavy is imported at module level: the composed config is checked first (a bad
knob exits with code 2 in about a second, a wrong type or unknown key already at
composition, against the schema `store_schema()` registers), then the thread count is
fixed, and only then do torch, transformers and the loop load.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from search.config_errors import composition_errors
from search.console import job_label
from search.result import require_seed
from search.threads import use_threads
from training.config_check import TABLES, check_training_config
from training.schema import store_schema

store_schema()  # conf/config.yaml's schema, before Hydra composes


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_training_config(cfg)
    try:
        require_seed(cfg.search._target_)
    except (ValueError, ImportError) as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    use_threads(cfg.get("threads"))
    from transformers.utils import logging as transformers_logging

    from training.loop import run

    transformers_logging.disable_progress_bar()  # per-checkpoint "Writing model shards" bars drown the table
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except Exception as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # Hydra holds a sweep job's error until every job has ended
            print(f"{job_label()}job failed, the sweep goes on (Hydra prints the traceback after the last job): "
                  f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    with composition_errors(*TABLES):
        main()
