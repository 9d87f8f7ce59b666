"""The project's Hydra config, composed in-process as the entry points compose it: the one
`CONF` path and the one `composed(...)` every config test uses. Importing it registers the
config schema (training/schema.py) that `conf/config.yaml` names, as the entry points do."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from training.schema import store_schema

CONF = Path(__file__).resolve().parents[1] / "conf"
store_schema()


def composed(*overrides: str, hydra: bool = False) -> DictConfig:
    """`conf/config.yaml` with `overrides`; `hydra=True` keeps the `hydra` node (choices, run dir)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
