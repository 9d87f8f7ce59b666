"""The sweep report: t intervals on known numbers, one row per cell, crashed runs listed,
and the sweep configs it summarises. (Over 300 lines because the report is one command whose
sections — table, health, strategy verdicts, pooled sweeps, figures — are checked on the same
synthetic sweeps; the fidelity rules have their own file, test_fidelity.py.)"""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.image import imread

from training.report import main, write_report
from training.runs import collect_runs, complete_cells
from training.tables import mean_ci, t_critical
from training.verdicts import answer

from composing import CONF
from lab_sweeps import Sweep, lab


@pytest.mark.parametrize(("df", "confidence", "expected"), [
    (1, 0.95, 12.706205), (2, 0.95, 4.302653), (3, 0.95, 3.182446), (4, 0.95, 2.776445),
    (9, 0.95, 2.262157), (30, 0.95, 2.042272), (100, 0.95, 1.983972), (5, 0.99, 4.032143),
])
def test_t_critical_matches_published_tables(df: int, confidence: float, expected: float) -> None:
    assert t_critical(df, confidence) == pytest.approx(expected, abs=2e-6)


def test_mean_ci_on_known_numbers() -> None:
    mean, half = mean_ci([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4)
    assert half == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-6)
    assert mean_ci([0.7]) == (0.7, None)  # one seed: no interval, not a zero-width one


def job(sweep: Path, num: int, search: dict, trainer: dict, seed: int, evals: list[tuple] | None,
        iterations: int = 2, choices: dict | None = None) -> Path:
    """A Hydra job folder; `evals` are (maj@1, pass@k, distinct, tokens) per iteration from 0."""
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    cfg = {"search": search, "trainer": trainer, "seed": seed, "iterations": iterations, "eval": {"k": 8}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if choices is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if evals is not None:
        rows = []
        for it, (maj1, passk, distinct, tokens) in enumerate(evals):
            if it:
                rows.append({"iteration": it, "kind": "train", "cumulative_tokens": tokens, "train_reward": 0.5})
            rows.append({"iteration": it, "kind": "eval", "cumulative_tokens": tokens, "maj@1": maj1,
                         "maj@k": maj1, "pass@k": passk, "k": 8, "distinct_correct": distinct})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


MCTS = {"_target_": "search.mcts.MCTS", "n_simulations": 4}
EI = {"name": "ei", "_target_": "training.ei.ExpertIteration"}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "multirun" / "12-00-00"
    # mcts × ei, 3 seeds: final maj@1 0.2 / 0.4 / 0.6, best 0.5 / 0.4 / 0.6
    job(s, 0, MCTS, EI, 0, [(0.1, 0.3, 1, 0), (0.5, 0.6, 2, 1000), (0.2, 0.7, 2, 2000)])
    job(s, 1, MCTS, EI, 1, [(0.1, 0.3, 1, 0), (0.3, 0.6, 2, 1100), (0.4, 0.7, 3, 2200)])
    job(s, 2, MCTS, EI, 2, [(0.1, 0.3, 1, 0), (0.4, 0.6, 2, 900), (0.6, 0.8, 4, 1800)])
    # sampling × ppo, 2 seeds, names from Hydra's recorded choices
    for n, seed in ((3, 0), (4, 1)):
        job(s, n, {"_target_": "search.sampling.Sampling"}, {"_target_": "training.ppo.PPO"}, seed,
            [(0.1, 0.3, 1, 0), (0.2, 0.4, 1, 1000), (0.2 + 0.1 * seed, 0.4, 1, 2000)],
            choices={"search": "sampling", "trainer": "ppo"})
    # tot × ei, one seed
    job(s, 5, {"name": "tot"}, EI, 0, [(0.1, 0.3, 1, 0), (0.3, 0.5, 2, 1000), (0.35, 0.55, 2, 2000)])
    # left out: crashed before writing metrics, stopped early, malformed metrics
    job(s, 6, {"name": "evolution"}, EI, 0, None)
    job(s, 7, {"name": "evolution"}, EI, 1, [(0.1, 0.3, 1, 0), (0.2, 0.4, 1, 1000)])
    bad = job(s, 8, {"name": "evolution"}, EI, 2, [(0.1, 0.3, 1, 0)])
    with (bad / "metrics.jsonl").open("a") as f:
        f.write("{truncated\n")
    return s


def test_cells_and_strategy_names(sweep: Path) -> None:
    runs = collect_runs(sweep)
    assert [(r.strategy, r.trainer, r.seed) for r in runs] == [
        ("MCTS", "ei", 0), ("MCTS", "ei", 1), ("MCTS", "ei", 2), ("sampling", "ppo", 0), ("sampling", "ppo", 1),
        ("tot", "ei", 0), ("evolution", "ei", 0), ("evolution", "ei", 1), ("evolution", "ei", 2)]
    problems = [r.problem for r in runs]
    assert problems[:6] == [None] * 6
    assert problems[6] == "crashed: no metrics.jsonl"
    assert problems[7] == "incomplete: last evaluation at iteration 1 of 2"
    assert problems[8].startswith("unreadable metrics: ") and "metrics.jsonl:2: not JSON" in problems[8]


def test_report_files_have_every_cell_with_its_interval(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    md = (sweep / "report.md").read_text()
    half = 4.302653 * 0.2 / math.sqrt(3)  # final maj@1 of mcts × ei: 0.2, 0.4, 0.6
    mcts_row = next(line for line in md.splitlines() if line.startswith("| MCTS | ei | 3 |"))
    assert mcts_row.startswith("| MCTS | ei | 3 | 0.100 ± 0.000 | ")  # the base's maj@1 (iteration 0) comes first
    assert f"| 0.400 ± {half:.3f} |" in mcts_row
    assert f"| 0.500 ± {4.302653 * 0.1 / math.sqrt(3):.3f} |" in mcts_row  # best maj@1: 0.5, 0.4, 0.6
    assert f"| 2,000 ± {4.302653 * 200 / math.sqrt(3):,.0f} |" in mcts_row  # tokens 2000, 2200, 1800
    sampling_row = next(line for line in md.splitlines() if line.startswith("| sampling | ppo | 2 |"))
    assert f"| 0.250 ± {12.706205 * math.sqrt(0.005) / math.sqrt(2):.3f} |" in sampling_row
    tot_row = next(line for line in md.splitlines() if line.startswith("| tot | ei | 1 |"))
    assert "| 0.350 ± n/a |" in tot_row and "± 0.000" not in tot_row
    assert "pass@8 final" in md and "evolution | ei" not in md
    for folder, reason in (("6", "crashed: no metrics.jsonl"), ("7", "incomplete: last evaluation at iteration 1 of 2"),
                           ("8", "unreadable metrics")):
        assert f"- `{folder}` (evolution × ei, seed {int(folder) - 6}): {reason}" in md
    assert mcts_row in printed and "left out (3 runs)" in printed

    with (sweep / "report.csv").open() as f:
        rows = {(r["strategy"], r["trainer"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("MCTS", "ei"), ("sampling", "ppo"), ("tot", "ei")}
    assert float(rows["MCTS", "ei"]["maj@1 final mean"]) == pytest.approx(0.4)
    assert float(rows["sampling", "ppo"]["maj@1 base mean"]) == pytest.approx(0.1)
    assert float(rows["MCTS", "ei"]["maj@1 final ci95"]) == pytest.approx(half, rel=1e-6)
    assert float(rows["MCTS", "ei"]["distinct final mean"]) == pytest.approx(3.0)
    assert rows["tot", "ei"]["pass@8 best ci95"] == "n/a"

    image = imread(sweep / "plateau.png")
    assert image.shape[0] > 400 and image[..., :3].std() > 0.01
    assert not (sweep / "passk.png").exists() and not (sweep / "slices.png").exists()  # no laboratory rows
    assert "![plateau curves](plateau.png)" in md and "passk.png" not in md


def test_a_sweep_of_only_crashed_runs_lists_them_and_draws_nothing(tmp_path: Path) -> None:
    job(tmp_path, 0, {"name": "mcts"}, EI, 0, None)
    report = write_report(tmp_path)
    assert [r.problem for r in report.left_out] == ["crashed: no metrics.jsonl"]
    assert not (tmp_path / "plateau.png").exists()
    assert "0 complete runs of 1" in (tmp_path / "report.md").read_text()


def test_a_folder_without_jobs_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no Hydra job folders" in capsys.readouterr().err


def sweep_params(name: str) -> dict[str, list[str]]:
    cfg = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
    return {k: str(v).split(",") for k, v in cfg["hydra"]["sweeper"]["params"].items()}


def test_plateau_sweep_is_the_full_grid() -> None:
    assert (CONF / "experiment" / "plateau.yaml").read_text().startswith("# @package _global_")
    params = sweep_params("plateau")
    assert params["equal_spend"] == ["sampling", "tot", "mcts", "evolution"]
    assert params["trainer"] == ["ei", "ppo"]
    assert params["seed"] == ["0", "1", "2"]


@pytest.mark.parametrize("experiment", ["plateau", "plateau_mini"])
def test_every_cell_of_the_sweep_composes(experiment: str) -> None:
    """Each strategy x trainer x seed of the grid is a valid config (fails while a config
    group option named in the grid, e.g. conf/trainer/ppo.yaml, does not exist yet)."""
    from hydra import compose, initialize_config_dir

    grid = sweep_params(experiment)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for search in grid["equal_spend"]:
            for trainer in grid["trainer"]:
                cfg = compose("config", overrides=[f"+experiment={experiment}", f"equal_spend={search}",
                                                   f"trainer={trainer}", f"seed={grid['seed'][-1]}"])
                assert cfg.search._target_ and cfg.trainer._target_
                assert cfg.seed == int(grid["seed"][-1]) and cfg.task._target_ == "tasks.countdown.Countdown"
                assert cfg.budget.tokens_per_problem == (2048 if experiment == "plateau" else 256)


def test_plateau_mini_is_two_cells_two_seeds() -> None:
    assert sweep_params("plateau_mini") == {"equal_spend": ["sampling", "mcts"], "trainer": ["ei"], "seed": ["0", "1"]}


STAND_IN_APP = '''
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from training.schema import store_schema

store_schema()  # conf/config.yaml names the schema, as training.run registers it


@hydra.main(config_path={conf!r}, config_name="config", version_base="1.3")
def main(cfg):
    """Writes what training.run writes, with numbers that depend on the cell and seed."""
    out = Path(HydraConfig.get().runtime.output_dir)
    base = {{"sampling": 0.2, "mcts": 0.4}}[HydraConfig.get().runtime.choices["search"]] + 0.01 * cfg.seed
    rows = [{{"iteration": i, "kind": "eval", "cumulative_tokens": i * cfg.budget.tokens_per_problem,
              "maj@1": base + 0.1 * i, "pass@k": base + 0.2, "k": cfg.eval.k, "distinct_correct": 1.0}}
            for i in range(cfg.iterations + 1)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))


main()
'''


@pytest.mark.parametrize("launcher", ["basic", "joblib2"])
def test_the_mini_sweep_runs_under_each_launcher_and_reports(tmp_path: Path, launcher: str) -> None:
    """The sweep config through Hydra's real launchers (basic, and joblib with 2 workers) into
    the report; the app stands in for training.run so that only the plumbing is timed here."""
    if launcher == "joblib2":
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install hydra-joblib-launcher")
    app = tmp_path / "app.py"
    app.write_text(STAND_IN_APP.format(conf=str(CONF)))
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(app), "-m", "+experiment=plateau_mini", f"hydra/launcher={launcher}",
                           f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = write_report(sweep)
    assert report.left_out == []
    md = (sweep / "report.md").read_text()
    half = 12.706205 * math.sqrt(0.00005) / math.sqrt(2)  # final maj@1 of seeds 0 and 1 differ by 0.01
    assert f"| mcts | ei | 2 | 0.405 ± {half:.3f} | 0.505 ± {half:.3f} |" in md  # base, final
    assert f"| sampling | ei | 2 | 0.205 ± {half:.3f} | 0.305 ± {half:.3f} |" in md
    assert "| 256 ± 0 |" in md and (sweep / "plateau.png").is_file()


def test_cells_keep_reward_and_initialisation_variants_apart(tmp_path: Path) -> None:
    s = Sweep(tmp_path / "variants")
    for trainer, reward, init in (("ppo", "sparse", "sft"), ("ppo", "dense", "sft"), ("ei", "orm", "pretrained_sft"),
                                  ("ei", "sparse", "pretrained"), ("ei", "dense", "pretrained"),
                                  ("ei", "sparse", "pretrained_sft")):
        s.add("sampling", trainer, 0, [0.1, 0.2], reward=reward, init=init)
    runs = collect_runs(s.path)
    assert [(r.trainer, r.reward, r.init) for r in runs][1] == ("ppo", "dense", "sft")
    assert list(complete_cells(runs)) == [("sampling", t) for t in
                                          ("ei", "ei+dense@pretrained", "ei+orm", "ei@pretrained", "ppo", "ppo+dense")]
    assert len(complete_cells(runs)["sampling", "ei"]) == 1  # pretrained_sft is an SFT initialisation: plain ei
    assert len(collect_runs(s.path, s.path)) == 6  # a sweep named twice counts once


def test_an_unnamed_trainer_with_a_negative_weight_is_its_own_cell(tmp_path: Path) -> None:
    s = tmp_path / "weights"
    evals = [(0.1, 0.3, 1, 0), (0.2, 0.4, 1, 1000)]
    ppo = {"_target_": "training.ppo.PPO"}
    for num, (trainer, seed) in enumerate([({**ppo, "negative_weight": 1.0}, 0), ({**ppo, "negative_weight": 0.2}, 0),
                                           ({**ppo, "negative_weight": 0.2, "name": "ppo+asym"}, 0)]):
        job(s, num, MCTS, trainer, seed, evals, iterations=1, choices={"search": "mcts", "trainer": "ppo"})
    assert [r.label for r in collect_runs(s)] == ["ppo", "ppo+neg0.2", "ppo+asym"]


STRATEGY_LABS = {  # beyond_support correct counts (of 64) per problem at the final iteration, per seed
    "sampling": [[0] * 4] * 3, "mcts": [[32, 32, 0, 0], [32, 32, 0, 0], [32, 32, 32, 0]], "tot": [[0] * 4] * 3,
    "evolution": [[1, 0, 0, 0], [0] * 4, [0] * 4], "best_first": [[32] * 4] * 3,
}


def strategy_grid(path: Path) -> Sweep:
    """sampling, mcts (more beyond support, 20% more tokens), tot (the same), evolution (one
    problem once), best_first (health-flagged: half its budget spent), xot (one seed) × ei;
    mcts × ppo without a sampling × ppo; mcts variants outside the main grid."""
    s = Sweep(path)
    for strategy, finals in STRATEGY_LABS.items():
        for seed, beyond in enumerate(finals):
            labs = [lab([8] * 8, [0] * 4)] + [lab([8] * 8, beyond)] * 3
            s.add(strategy, "ei", seed, [0.2, 0.3, 0.32, 0.33], labs=labs,
                  tokens_per_iteration=1200 if strategy == "mcts" else 1000,
                  spent=0.5 if strategy == "best_first" else 1.0)
    s.add("xot", "ei", 0, [0.2, 0.3, 0.3, 0.3], labs=[lab([8] * 8, [0] * 4)] + [lab([8] * 8, [64] * 4)] * 3)
    for seed in range(2):
        s.add("mcts", "ppo", seed, [0.2, 0.3, 0.3, 0.3], labs=[lab([8] * 8, [0] * 4)] * 4)
        s.add("mcts", "ei", seed, [0.2, 0.3, 0.3, 0.3], reward="dense")
        s.add("mcts", "ei", seed, [0.2, 0.3, 0.3, 0.3], init="pretrained")
    return s


def test_a_flagged_sampling_reference_invalidates_the_cells_measured_against_it(tmp_path: Path) -> None:
    """A Δ against a reference that does not measure what its name says is no evidence either."""
    s = Sweep(tmp_path / "grid")
    for strategy, spent in (("sampling", 0.5), ("tot", 1.0)):
        for seed in range(2):
            s.add(strategy, "ei", seed, [0.2, 0.3, 0.3, 0.3], spent=spent,
                  labs=[lab([8] * 8, [0] * 4)] + [lab([8] * 8, [0] * 4)] * 3)
    (row,) = write_report(s.path).answer
    assert (row.strategy, row.verdict) == ("tot", "invalid cell")
    assert row.why == "reference sampling × ei: spent 0.50 of its budget (< 0.9)"


def test_the_answer_judges_each_strategy_against_sampling(tmp_path: Path) -> None:
    s = strategy_grid(tmp_path / "grid")
    report = write_report(s.path)
    rows = {(r.strategy, r.trainer): r for r in report.answer}
    assert list(rows) == [("best_first", "ei"), ("evolution", "ei"), ("mcts", "ei"), ("mcts", "ppo"), ("tot", "ei"),
                          ("xot", "ei")]  # the dense and pretrained mcts cells are not the main grid
    assert {c: r.verdict for c, r in rows.items()} == {
        ("best_first", "ei"): "invalid cell", ("evolution", "ei"): "inconclusive", ("mcts", "ei"): "yes",
        ("mcts", "ppo"): "inconclusive", ("tot", "ei"): "no", ("xot", "ei"): "inconclusive"}
    mcts = rows["mcts", "ei"]
    half = 4.302653 * statistics.stdev([0.5, 0.5, 0.75]) / math.sqrt(3)  # sampling's side has no spread: df 2
    assert mcts.metrics["beyond_support/pass@64"] == f"0.583 (+0.583 ± {half:.3f})"
    assert mcts.metrics["beyond_support/pass@1"] == f"0.292 (+0.292 ± {half / 2:.3f})"  # pass@1 = 32/64 per solved
    assert mcts.metrics["all/coverage"] == "0.500 (+0.000 ± 0.000)"
    assert mcts.tokens == "3,600 (sampling 3,000, ⚠ +20%)" and rows["tot", "ei"].tokens == "3,000 (sampling 3,000)"
    low, high = 0.583333 - half, 0.583333 + half
    assert mcts.why == f"Δ beyond_support/pass@64 +0.583 [{low:+.3f}, {high:+.3f}]: lower bound > 0"
    assert rows["tot", "ei"].why == "Δ beyond_support/pass@64 +0.000 [+0.000, +0.000]: upper bound < 0.05"
    assert rows["evolution", "ei"].why.endswith(": neither above 0 nor below 0.05")
    assert rows["best_first", "ei"].why == "spent 0.50 of its budget (< 0.9)"
    assert rows["mcts", "ppo"].why == "no sampling × ppo runs"
    assert rows["mcts", "ppo"].metrics["all/pass@64"] == "0.667"  # no baseline: the value alone
    assert rows["xot", "ei"].why == "needs ≥ 2 seeds on both sides (has 1)"
    md = (s.path / "report.md").read_text()
    assert "| mcts | ei | 3 | 3,600 (sampling 3,000, ⚠ +20%) | 0.292 (+0.292 ± " in md
    assert "- **tot × ei** breaks the plateau on this testbed: **no** (Δ beyond_support/pass@64" in md
    assert "| ei: Δpass@64 +0.000 [+0.000, +0.000], crossover_k 1 |" in md  # base = final


def test_a_cell_without_laboratory_rows_gets_no_strategy_verdict(sweep: Path) -> None:
    rows = {(r.strategy, r.trainer): r for r in answer(complete_cells(collect_runs(sweep)), {})}
    assert rows["MCTS", "ei"].verdict == "inconclusive" and rows["MCTS", "ei"].why == "no sampling × ei runs"
    assert rows["MCTS", "ei"].metrics["beyond_support/pass@K"] == "–"


def test_two_sweeps_pool_into_one_report_with_the_fidelity_table_and_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = Sweep(tmp_path / "grid")
    labs = [lab([8] * 8, [0] * 4), {}, {}, lab([32] * 4 + [0] * 4, [0] * 4)]  # eval.lab.every: the two ends only
    for seed, (ei, ppo) in enumerate(((0.35, 0.33), (0.35, 0.35), (0.35, 0.34))):
        grid.add("sampling", "ei", seed, [0.2, 0.34 + 0.01 * seed, 0.34, ei], labs=labs)
        grid.add("sampling", "ppo", seed, [0.2, 0.3, 0.33, ppo], labs=labs)
        grid.add("mcts", "ei", seed, [0.2, 0.3, 0.33, 0.34], labs=labs)
    extra = Sweep(tmp_path / "fidelity")
    for seed, last in enumerate((0.35, 0.36, 0.34)):
        extra.add("sampling", "ppo", seed, [0.2, 0.3, 0.33, last], reward="dense")
        extra.add("sampling", "ei", seed, [0.05, 0.2, 0.25, last - 0.05], init="pretrained")
    job(extra.path, 99, {"name": "sampling"}, EI, 5, None)  # a crashed job of the second sweep
    alone = {f.number: f.verdict for f in write_report(grid.path).findings}
    assert alone == {1: "reproduced", 2: "reproduced", 3: "reproduced", 4: "inconclusive", 5: "inconclusive",
                     6: "reproduced"}  # findings 4 and 5 need the second sweep's cells
    assert main([str(grid.path), str(extra.path)]) == 0
    printed = capsys.readouterr().out
    md = (grid.path / "report.md").read_text()
    assert md.startswith("# Plateau report: grid (pooled with `../fidelity`)\n")
    assert "15 complete runs of 16" in md and "- `../fidelity/99` (sampling × ei, seed 5): crashed" in md
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections == ["## Fidelity: does the testbed reproduce the published findings?",
                        "## The answer: does a strategy break the plateau?", "## Health", "## Runs left out",
                        "## Figures"]
    for cell in ("| sampling | ppo+dense | 3 |", "| sampling | ei@pretrained | 3 | 0.050 ± 0.000 |"):
        assert cell in md
    assert "| 4 | dense step rewards do not beat sparse (Havrilla et al.) | ppo+dense − ppo maj@1 +0.010 [" in md
    assert md.count("| reproduced | – |") == 6
    assert "| 5 | RL narrows the pretrained-vs-SFT gap (Havrilla et al.) | ei: gap base 0.150 → final 0.050, " in md
    assert "Rules (every cell a rule reads needs >= 2 complete seeds" in md
    assert "- **mcts × ei** breaks the plateau on this testbed: **no**" in md
    for name in ("plateau.png", "passk.png", "slices.png"):
        assert (grid.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in md
        assert imread(grid.path / name)[..., :3].std() > 0.01 and not (extra.path / name).exists()
    assert "| 4 | dense step rewards" in printed and "breaks the plateau" in printed


def test_the_usage_line_says_sweeps_are_pooled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "several are pooled into one report, written into the first" in capsys.readouterr().err


def test_exploration_baselines_are_judged_against_sampling_with_their_base_trainer(tmp_path: Path) -> None:
    """plateau_baselines' rows (grpo+kl_cov on sampling, grpo+treerl on entropy_tree) stand in
    the strategy table against sampling × grpo; sampling × grpo itself is the reference."""
    s = Sweep(tmp_path / "baselines")
    base, solved, none = lab([8] * 4, [0] * 4), lab([8] * 4, [32] * 4), lab([8] * 4, [0] * 4)
    for seed in range(3):
        s.add("sampling", "grpo", seed, [0.2, 0.3], labs=[base, none])
        s.add("sampling", "grpo+kl_cov", seed, [0.2, 0.3], labs=[base, none])
        s.add("entropy_tree", "grpo+treerl", seed, [0.2, 0.3 + 0.01 * seed], labs=[base, solved if seed else none])
    rows = {(r.strategy, r.trainer): r for r in answer(complete_cells(collect_runs(s.path)), {})}
    assert list(rows) == [("entropy_tree", "grpo+treerl"), ("sampling", "grpo+kl_cov")]
    assert rows["sampling", "grpo+kl_cov"].verdict == "no"
    assert rows["entropy_tree", "grpo+treerl"].verdict == "inconclusive"  # 2 of 3 seeds solve: too wide
    assert rows["entropy_tree", "grpo+treerl"].metrics["beyond_support/pass@64"].startswith("0.667 (+0.667 ± ")
