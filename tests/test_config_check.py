"""Bad numeric knobs are caught right after Hydra composition: one line naming the key, the
value and the allowed range, exit code 2, and no torch import before the check."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from search.config_check import RUN, SEARCH, Knob, problems
from search.threads import launcher_share, pick_threads
from training.config_check import TABLES

from composing import CONF, composed

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
           for group in ("search", "search/evaluator", "trainer", "equal_spend")}
DECLARED = {path for table in TABLES for path in table}


def every_option():
    yield ()
    for group, names in OPTIONS.items():
        for name in names:
            if group == "search/evaluator":
                yield ("search=mcts", f"search/evaluator={name}")
            elif group == "equal_spend":
                yield ("+experiment=plateau", f"equal_spend={name}")
            else:
                yield (f"{group}={name}",)


def numeric_leaves(node, prefix=""):
    """Dotted paths of every int or float leaf (interpolations are checked at their source;
    a null default says nothing about the type, so nullable knobs are declared by hand)."""
    for key in node:
        path = f"{prefix}{key}"
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if OmegaConf.is_dict(value):
            yield from numeric_leaves(value, path + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path


@pytest.mark.parametrize("overrides", list(every_option()), ids=lambda o: " ".join(o) or "defaults")
def test_every_numeric_knob_has_a_declared_range_and_the_defaults_satisfy_it(overrides):
    cfg = composed(*overrides)
    checked = [p for p in numeric_leaves(cfg) if p.split(".")[0] in {"search", "trainer", "orm", "budget", "eval", "health"}
               or "." not in p]
    assert [p for p in checked if p not in DECLARED] == []
    assert problems(cfg, *TABLES) == []


def test_a_violation_names_key_value_and_range():
    cfg = composed("search=mcts", "search.top_p=2", "trainer=ppo", "trainer.lr=abc")
    assert problems(cfg, *TABLES) == [
        "config error: search.top_p=2 is not allowed; expected a number in (0, 1]",
        "config error: trainer.lr='abc' is not allowed; expected a number > 0"]


def test_knob_types_and_bounds():
    assert Knob(int, ge=1, null=True).allowed() == "an integer >= 1 or null"
    assert not Knob(int, ge=1).accepts(2.0) and not Knob(int, ge=1).accepts(True)
    assert not Knob(float, gt=0).accepts(float("nan")) and Knob(float, gt=0).accepts(3)
    assert not Knob(float, ge=0, lt=1).accepts(1.0) and Knob(float, ge=0, lt=1).accepts(0)
    assert Knob(str, choices=("a", "b")).accepts("b") and not Knob(str, choices=("a", "b")).accepts("c")
    assert not Knob(str, choices=("a",)).accepts(None) and Knob(str, null=True, choices=("a",)).accepts(None)


def test_a_strategy_from_outside_the_package_is_checked_by_key_name_and_its_own_keys_skipped():
    cfg = OmegaConf.create({"search": {"_target_": "elsewhere.Beam", "temperature": -0.5, "width": -3}})
    assert problems(cfg, RUN, SEARCH) == [
        "config error: search.temperature=-0.5 is not allowed; expected a number >= 0"]


def run_entry(module, *overrides, cwd):
    """Run an entry point; report whether torch (or transformers, or scipy: seconds to import on a
    busy machine) got imported before it exited."""
    probe = ("import atexit, runpy, sys; atexit.register(lambda: print('torch imported:', any(m in sys.modules for m in "
             "('torch', 'transformers', 'scipy')), file=sys.stderr)); sys.argv = ['x', *sys.argv[1:]]; "
             f"runpy.run_module({module!r}, run_name='__main__')")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *overrides, f"hydra.run.dir={cwd}"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    return done, time.perf_counter() - started


BAD = [
    (("budget.tokens_per_problem=-5",), "budget.tokens_per_problem=-5", "an integer >= 1 or null"),
    (("budget.calls_per_problem=0",), "budget.calls_per_problem=0", "an integer >= 1 or null"),
    (("search.temperature=-1",), "search.temperature=-1", "a number >= 0"),
    (("search.top_p=2",), "search.top_p=2", "a number in (0, 1]"),
    (("iterations=-1",), "iterations=-1", "an integer >= 0"),
    (("train_problems=0",), "train_problems=0", "an integer >= 1"),
    (("eval.k=0",), "eval.k=0", "an integer >= 1"),
    (("seed=-1",), "seed=-1", "an integer in [0, 4294967296)"),
    (("trainer=grpo", "trainer.lr=abc"), "trainer.lr='abc'", "a number > 0"),
    (("trainer=ppo", "trainer.kl_coef=-0.1"), "trainer.kl_coef=-0.1", "a number >= 0"),
    (("trainer.sft.batch_size=0",), "trainer.sft.batch_size=0", "an integer >= 1"),
    (("search=mcts", "search.max_depth=0"), "search.max_depth=0", "an integer >= 1"),
    (("trainer.sft.autocast=float16",), "trainer.sft.autocast='float16'", "one of bfloat16 or null"),
    (("trainer=grpo", "trainer.old_logp=recomputed"), "trainer.old_logp='recomputed'", "one of recompute, sampler"),
    (("trainer=ppo", "trainer.target_kl=0"), "trainer.target_kl=0", "a number > 0 or null"),
]


@pytest.mark.parametrize(("overrides", "shown", "allowed"), BAD, ids=[b[1] for b in BAD])
def test_training_run_rejects_the_value_in_one_line_with_exit_code_2(tmp_path, overrides, shown, allowed):
    done, seconds = run_entry("training.run", *overrides, cwd=tmp_path)
    print(f"{' '.join(overrides)}: exit {done.returncode} after {seconds:.2f} s")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"config error: {shown} is not allowed; expected {allowed}",
                                        "torch imported: False"]


COMPOSITION = [  # the schema (training/schema.py) rejects these while Hydra composes
    (("iterations=abc",), "config error: iterations='abc' is not allowed; expected an integer >= 0"),
    (("+experiment=plateau_lab", "eval.lab.samples=x"),
     "config error: eval.lab.samples='x' is not allowed; expected an integer >= 1"),
]


@pytest.mark.parametrize(("overrides", "line"), COMPOSITION, ids=[" ".join(c[0]) for c in COMPOSITION])
def test_a_wrong_type_exits_with_code_2_and_one_line_at_composition(tmp_path, overrides, line):
    done, seconds = run_entry("training.run", *overrides, cwd=tmp_path)
    print(f"{' '.join(overrides)}: exit {done.returncode} after {seconds:.2f} s")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line, "torch imported: False"]


def test_a_typo_in_an_experiment_yaml_exits_with_code_2_naming_key_and_file(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain_problem: 8\n")
    done, _ = run_entry("search.run", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=typo",
                        cwd=tmp_path / "run")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["config error: train_problem is not a known key (in experiment/typo); "
                                        "did you mean train_problems?", "torch imported: False"]


def test_search_run_rejects_the_value_before_loading_torch(tmp_path):
    done, _ = run_entry("search.run", "search=tot", "search.k=0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["config error: search.k=0 is not allowed; expected an integer >= 1",
                                        "torch imported: False"]


def test_an_unknown_strategy_is_reported_before_torch_loads(tmp_path):
    done, seconds = run_entry("training.run", "search=nope", cwd=tmp_path)
    print(f"search=nope: exit {done.returncode} after {seconds:.2f} s")
    assert done.returncode != 0 and "Could not find 'search/nope'" in done.stderr
    assert done.stderr.splitlines()[-1] == "torch imported: False"


# ------------------------------------------------------------------ threads


def test_joblib_jobs_share_the_cores_and_other_launchers_take_their_reservation():
    joblib2 = OmegaConf.to_container(composed("hydra/launcher=joblib2", hydra=True).hydra.launcher)
    assert launcher_share(joblib2, cores=2) == (1, "2 cores shared by 2 joblib jobs")
    assert launcher_share(joblib2, cores=16) == (8, "16 cores shared by 2 joblib jobs")
    assert launcher_share({**joblib2, "n_jobs": -1}, cores=4)[0] == 1
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"remote": {"num_cpus": 3}}}
    assert launcher_share(ray, cores=16)[0] == 3
    assert launcher_share({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, cores=4) is None


def test_the_threads_key_beats_the_launcher_share_which_beats_the_environment():
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}
    assert pick_threads(3, joblib, environ={"OMP_NUM_THREADS": "1"}, cores=8)[0] == 3
    assert pick_threads(None, joblib, environ={"OMP_NUM_THREADS": "8"}, cores=8)[0] == 4
    assert pick_threads(None, None, environ={"OMP_NUM_THREADS": "1"}, cores=8) == (1, "OMP_NUM_THREADS")
    assert pick_threads(None, None, environ={}, cores=8) == (8, "all 8 usable cores")
