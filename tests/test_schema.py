"""The config schema (search/schema.py, training/schema.py): every shipped option composes
against it, a wrong type or an undeclared key fails at composition naming the key, and
the range checks come from the schema's fields."""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Optional

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from search.config_check import Knob, knobs, problems
from search.config_errors import Composed, composition_errors, error_line
from search.schema import optional, required
from training.config_check import LOOP, TABLES
from training.schema import PlateauConfig

from composing import CONF, composed

ROOT = CONF.parent


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# What test_config_check's every_option does not compose already (search, search/evaluator,
# trainer, and equal_spend under +experiment=plateau): experiments, testbeds, their swept
# groups, and the other groups' options.
CHOICES = [
    *[(f"+experiment={name}",) for name in names("experiment")],
    *[(f"+testbed={name}",) for name in names("testbed")],
    *[("+experiment=plateau_lab_fidelity", f"lab_arm={name}") for name in names("lab_arm")],
    *[("+experiment=plateau_baselines", f"baseline={name}") for name in names("baseline")],
    *[("+experiment=plateau_lab", f"equal_spend={name}") for name in names("equal_spend")],
    *[(f"{group}={name}",) for group in ("cluster", "task", "policy") for name in names(group)],
    *[(f"logger=[{name}]",) for name in names("logger")],
    (f"hydra.searchpath=[file://{ROOT / 'docs' / 'examples' / 'plugin' / 'conf'}]",  # docs/extending.md's example
     "task=sums", "search=until_solved", "trainer=shortest"),
]


@pytest.mark.parametrize("overrides", CHOICES, ids=lambda o: " ".join(o).split("/")[-1])
def test_every_experiment_and_option_composes_against_the_schema(overrides):
    cfg = composed(*overrides)
    assert OmegaConf.get_type(cfg) is PlateauConfig
    OmegaConf.to_container(cfg, resolve=True)  # interpolations into typed keys (eval.lab.support: ${support}) resolve
    assert problems(cfg, *TABLES) == []


def test_the_testbed_s_own_top_level_key_is_declared_and_reaches_the_lab():
    cfg = composed("+experiment=plateau_lab")
    assert cfg.support.exclude_ops == ["-"] and cfg.eval.lab.support.exclude_ops == ["-"]
    assert composed().support is None


WRONG_TYPES = [
    (("iterations=abc",), "config error: iterations='abc' is not allowed; expected an integer >= 0"),
    (("+experiment=plateau_lab", "eval.lab.samples=x"),
     "config error: eval.lab.samples='x' is not allowed; expected an integer >= 1"),
    (("eval.k=2.5",), "config error: eval.k=2.5 is not allowed; expected an integer >= 1"),
    (("cluster=ray", "cluster.cpus_per_worker=two"),
     "config error: cluster.cpus_per_worker='two' is not allowed; expected an integer >= 1"),
    (("iteratons=3",), "config error: iteratons is not a known key; did you mean iterations?"),
    (("trainer=ei", "trainer.lam=1.0"), "config error: trainer.lam is not a key of the trainer this config composes; "
     "other trainer choices have it: choose one of them on the command line (in a sweep, a group swept in "
     "hydra.sweeper.params is chosen only per job)"),
    (("trainer=ppo", "trainer.sft.lr=0.1"), "config error: trainer.sft is not a key of the trainer this config "
     "composes; other trainer choices have it: choose one of them on the command line (in a sweep, a group swept in "
     "hydra.sweeper.params is chosen only per job)"),
]


@pytest.mark.parametrize(("overrides", "line"), WRONG_TYPES, ids=[" ".join(w[0]) for w in WRONG_TYPES])
def test_a_wrong_type_fails_at_composition_naming_the_key(overrides, line):
    with pytest.raises(ConfigCompositionException) as failed:
        composed(*overrides)
    key = line.split()[2].split("=")[0]
    assert key in str(failed.value.__cause__)  # Hydra's own error names it
    assert error_line(failed.value, *TABLES) == line


TYPO_YAML = [
    ("iteratons: 3\n", "config error: iteratons is not a known key (in experiment/typo); did you mean iterations?"),
    ("eval:\n  lab:\n    sampels: 8\n",
     "config error: eval.lab.sampels is not a known key (in experiment/typo); did you mean eval.lab.samples?"),
    ("budget:\n  tokens_per_problem: lots\n", "config error: budget.tokens_per_problem='lots' is not allowed; "
     "expected an integer >= 1 or null (in experiment/typo)"),
]


@pytest.mark.parametrize(("body", "line"), TYPO_YAML, ids=[t[0].split(":")[0] for t in TYPO_YAML])
def test_a_bad_key_inside_an_experiment_yaml_fails_at_composition_naming_key_and_file(tmp_path, body, line):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\n" + body)
    with pytest.raises(ConfigCompositionException) as failed:
        composed(f"hydra.searchpath=[file://{tmp_path}]", "+experiment=typo")
    assert error_line(failed.value, *TABLES) == line


def test_ranges_are_read_from_the_schema_fields():
    @dataclass
    class Settings:
        @dataclass
        class Inner:
            rate: Optional[float] = optional(gt=0, le=1)

        count: int = required(ge=2)
        name: str = required()
        inner: Inner = field(default_factory=Inner)

    assert knobs(Settings, "x.") == {"x.count": Knob(int, ge=2), "x.name": Knob(str),
                                     "x.inner.rate": Knob(float, gt=0, le=1, null=True)}
    assert LOOP["iterations"] == Knob(int, ge=0) and LOOP["eval.lab.every"] == Knob(int, ge=1, null=True)
    with pytest.raises(TypeError, match="minimum"):
        required(minimum=0)


def test_hydra_shows_errors_of_the_run_itself_again_once_composed(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with composition_errors(*TABLES):
        assert os.environ["HYDRA_FULL_ERROR"] == "1"
        Composed().on_run_start(config=composed())
        assert "HYDRA_FULL_ERROR" not in os.environ
    assert composed(hydra=True).hydra.callbacks.composed._target_ == "search.config_errors.Composed"


APP = '''
import sys
import hydra
from search.config_errors import composition_errors
from training.schema import store_schema

store_schema()


@hydra.main(config_path={conf!r}, config_name="config", version_base="1.3")
def main(cfg):
    raise RuntimeError("the run itself failed")


with composition_errors():
    main()
'''


def test_an_error_of_the_run_reaches_hydra_s_display_with_exit_code_1(tmp_path):
    (tmp_path / "app.py").write_text(APP.format(conf=str(CONF)))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run([sys.executable, str(tmp_path / "app.py"), f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 1
    assert "RuntimeError: the run itself failed" in done.stderr
    assert "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace." in done.stderr
