"""The plateau laboratory end to end at tiny size: a support-restricted base, and eval
rows with pass@k curves, slices, coverage, entropy and base NLL that agree with the
solver and with their own per-problem counts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.countdown import Countdown
from tasks.support import SupportRule

ROOT = Path(__file__).resolve().parents[1]
TINY = ["iterations=1", "train_problems=4", "eval.problems=24", "eval.k=2", "eval.max_new_tokens=40",
        "eval.lab.samples=8", "eval.lab.max_new_tokens=40", "policy.pretrain.lines=400", "policy.pretrain_epochs=1",
        "policy.sft_problems=24", "policy.sft.epochs=1", "budget.tokens_per_problem=96", "health.nodes=0",
        "trainer.sft.epochs=1", "save_trees=1", "progress=false"]


@pytest.mark.slow
def test_lab_rows_carry_curves_slices_and_instruments(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "training.run", "+experiment=plateau_lab", *TINY,
                           f"++policy.cache_dir={tmp_path / 'bases'}", f"hydra.run.dir={run}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 1]
    task = Countdown(**{k: v for k, v in json.loads((next((tmp_path / "bases").glob("*/recipe.json"))).read_text())
                        ["task"].items() if k not in ("_target_", "limit")})
    problems = task.problems("test", limit=24, seed=0)
    rule = SupportRule(("-",))
    for row in evals:
        curve = [row[f"all/pass@{k}"] for k in (1, 2, 4, 8)]
        assert curve == sorted(curve)  # pass@k never falls with k
        counts = row["lab_counts"]
        assert len(counts) == 24 and all(n == 8 for n, _, _ in counts)
        assert row["all/pass@1"] == pytest.approx(sum(c / n for n, c, _ in counts) / 24)
        assert [s for _, _, s in counts] == [rule.slice_of(task, p) for p in problems]
        sizes = [row.get(f"{s}/problems", 0) for s in ("in_support", "beyond_support")]
        assert sum(sizes) == 24 and sizes[1] == sum(s == "beyond_support" for _, _, s in counts)
        assert row["entropy"] > 0
        assert row["all/maj@1"] == pytest.approx(row["maj@1"])  # the same greedy traces as the eval's maj@1
    recipe = json.loads(next((tmp_path / "bases").glob("*/recipe.json")).read_text())
    assert recipe["init"] == "pretrained_sft" and recipe["support"] == {"exclude_ops": ["-"]}


@pytest.mark.slow
def test_cells_share_the_base_row_and_instruments_run_only_when_due(tmp_path):
    """eval.cache_base: a second cell (another trainer) reads the first cell's iteration-0
    row instead of sampling it again; eval.lab.every: the middle iteration skips the
    64-sample pass, the ends keep it."""
    env = {**os.environ, "PLATEAU_CACHE": str(tmp_path / "cache")}
    base = [*[o for o in TINY if not o.startswith("iterations=")], "iterations=2", "eval.lab.every=5",
            "eval.cache_base=true", "threads=1"]

    def cell(trainer: str) -> tuple[list[dict], str]:
        run = tmp_path / trainer
        own = [o for o in base if trainer == "ei" or not o.startswith("trainer.sft.")]  # PPO has no SFT step
        done = subprocess.run([sys.executable, "-m", "training.run", "+experiment=plateau_lab", *own,
                               f"lab_arm={trainer}", f"hydra.run.dir={run}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
        return rows, done.stdout + done.stderr

    ei_rows, ei_log = cell("ei")
    assert "read from the cache" not in ei_log
    assert ["all/pass@8" in r for r in ei_rows] == [True, False, True]
    ppo_rows, ppo_log = cell("ppo")
    assert "iteration 0 read from the cache" in ppo_log
    assert ppo_rows[0] == ei_rows[0]
    assert ["all/pass@8" in r for r in ppo_rows] == [True, False, True]


def test_lab_instruments_are_due_at_the_ends_and_every_nth_iteration():
    from omegaconf import OmegaConf

    from training.lab_eval import lab_due

    every3 = OmegaConf.create({"samples": 8, "every": 3})
    assert [lab_due(every3, i, 7) for i in range(8)] == [True, False, False, True, False, False, True, True]
    assert all(lab_due(OmegaConf.create({"samples": 8, "every": None}), i, 4) for i in range(5))
    assert not lab_due(None, 0, 4)
    with pytest.raises(ValueError, match="eval.lab.every"):
        lab_due(OmegaConf.create({"every": 0}), 1, 4)


def test_the_base_row_key_ignores_strategy_and_trainer_but_not_seed_or_base():
    from composing import composed
    from training.eval_cache import base_eval_key

    def key(*overrides: str) -> str:
        return base_eval_key(composed("+experiment=plateau_lab", *overrides), "Countdown")

    first = key("lab_arm=ei", "equal_spend=sampling")
    assert key("lab_arm=ppo", "equal_spend=mcts", "iterations=7") == first
    assert key("seed=1") != first
    assert key("policy.init=pretrained") != first
    assert key("eval.lab.samples=32") != first
    assert base_eval_key(composed("+experiment=plateau_lab"), "ConditionedTask") != first


def test_the_base_row_key_follows_the_source_of_the_code_that_makes_the_row(tmp_path, monkeypatch):
    """A copy of the row's sources gives the same key; editing one of them gives a new key
    (stale rows are not reused), editing a strategy's module does not (cells share the row)."""
    import shutil

    from composing import composed
    from training import eval_cache

    cfg = composed("+experiment=plateau_lab")
    key = eval_cache.base_eval_key(cfg, "Countdown")
    assert eval_cache.base_eval_key(cfg, "Countdown") == key
    first = eval_cache.row_code_version()
    assert first == eval_cache.CODE_VERSION
    for source in eval_cache.ROW_SOURCES:
        copy = shutil.copytree if (eval_cache.ROOT / source).is_dir() else shutil.copy
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        copy(eval_cache.ROOT / source, tmp_path / source)
    (tmp_path / "search" / "mcts.py").write_text("# a strategy: not part of the row\n")
    assert eval_cache.row_code_version(tmp_path) == first
    for edited in ("search/metrics.py", "tasks/countdown.py"):  # a file, and a file of a listed folder
        source = (tmp_path / edited).read_text()
        (tmp_path / edited).write_text(source + "\nEVAL_CHUNK = 50\n")
        assert eval_cache.row_code_version(tmp_path) != first
        monkeypatch.setattr(eval_cache, "ROOT", tmp_path)  # the sources edited under a running process:
        assert eval_cache.base_eval_key(cfg, "Countdown") == key  # its key is still the code it loaded
        (tmp_path / edited).write_text(source)
        assert eval_cache.row_code_version(tmp_path) == first
    with pytest.raises(FileNotFoundError, match="search/gone.py"):
        eval_cache.row_code_version(tmp_path, ("search/metrics.py", "search/gone.py"))


def test_the_base_is_fine_tuned_only_inside_the_support():
    from training.base_model import reference_traces

    task = Countdown(min_numbers=3, max_numbers=3, number_range=[1, 6], target_range=[2, 30], train_size=80,
                     test_size=10)
    recipe = {"traces_per_problem": 4, "support": {"exclude_ops": ["-"]}}
    filtered = {p.id: reference_traces(task, p, recipe) for p in task.problems("train")}
    everything = {p.id: reference_traces(task, p, {"traces_per_problem": 4}) for p in task.problems("train")}
    assert all("-" not in task.extract_answer(t) for ts in filtered.values() for t in ts)
    assert any("-" in task.extract_answer(t) for ts in everything.values() for t in ts)
    assert sum(map(len, filtered.values())) < sum(map(len, everything.values()))


class CountingPolicy:
    """A real policy that records the temperature of every `sample` call."""

    def __init__(self, policy):
        self.policy, self.temperatures = policy, []

    def sample(self, prompts, **kw):
        self.temperatures.append(kw["temperature"])
        return self.policy.sample(prompts, **kw)

    def __getattr__(self, name):
        return getattr(self.policy, name)


SLICED = dict(min_numbers=3, max_numbers=3, number_range=[1, 6], target_range=[2, 30], train_size=40, test_size=12)


def lab_config(**eval_overrides):
    from omegaconf import OmegaConf

    return OmegaConf.create({"k": 2, "temperature": 1.0, "max_new_tokens": 24, **eval_overrides,
                             "lab": {"samples": 4, "max_new_tokens": 24, "entropy_samples": 2, "every": None,
                                     "support": {"exclude_ops": ["*"]}}})


def test_the_lab_slices_the_rows_greedy_decode_and_does_not_decode_again():
    """One greedy `sample` call serves the row's maj@1 and every slice's maj@1, which equal
    the verdicts of one independent greedy decode restricted to the slice."""
    from policies.hf import HFPolicy
    from policies.tiny import build_tiny_model
    from search.metrics import first_correct
    from search.policy_eval import greedy_results
    from training.lab_eval import slice_members
    from training.loop import evaluate

    task = Countdown(**SLICED)
    problems = task.problems("test", limit=12)
    policy = CountingPolicy(HFPolicy(*build_tiny_model("1m", seed=0)))
    row = evaluate(policy, task, problems, lab_config(), 11, base=HFPolicy(*build_tiny_model("1m", seed=1)))
    assert policy.temperatures.count(0.0) == 1 and len(policy.temperatures) == 3  # greedy, k samples, lab samples
    verdicts = first_correct(task, greedy_results(policy.policy, task, problems, 24))
    members = slice_members(task, problems, SupportRule(("*",)))
    assert set(members) == {"all", "in_support", "beyond_support"}
    for name, idx in members.items():
        assert row[f"{name}/maj@1"] == sum(verdicts[i] for i in idx) / len(idx)
    assert row["all/maj@1"] == row["maj@1"]


def test_each_slices_maj1_is_the_share_of_its_problems_with_a_correct_greedy_trace():
    from policies.hf import HFPolicy
    from policies.tiny import build_tiny_model
    from training.lab_eval import lab_metrics, slice_members

    task = Countdown(**SLICED)
    problems = task.problems("test", limit=12)
    verdicts = [i < 4 for i in range(12)]  # 3 of the first 4 are beyond the support
    lab = lab_config().lab
    row = lab_metrics(HFPolicy(*build_tiny_model("1m", seed=0)), None, task, problems, lab, 5, verdicts)
    members = slice_members(task, problems, SupportRule(("*",)))
    assert {name: row[f"{name}/maj@1"] for name in members} == {
        name: sum(verdicts[i] for i in idx) / len(idx) for name, idx in members.items()}
    assert row["all/maj@1"] == pytest.approx(1 / 3) and row["in_support/maj@1"] != row["beyond_support/maj@1"]
    with pytest.raises(ValueError, match="greedy verdicts"):
        lab_metrics(HFPolicy(*build_tiny_model("1m", seed=0)), None, task, problems, lab, 5, verdicts[:-1])
