"""Hydra entry point: `python -m training.run task=countdown policy=tiny search=sampling trainer=ei`."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from transformers.utils import logging as transformers_logging

from training.loop import run


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    transformers_logging.disable_progress_bar()  # per-checkpoint "Writing model shards" bars drown the table
    run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
