"""Run curves from metrics.jsonl: which PNGs appear, what they plot, what their titles and
axes say, and bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from training.plots import draw, main, plot_run, points, run_title
from training.runs import read_metrics

from composing import composed


def write_metrics(run: Path, rows: list[dict | str]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def eval_row(it: int, tokens: int, acc: float, **extra: float) -> dict:
    return {"iteration": it, "kind": "eval", "cumulative_tokens": tokens, "maj@1": acc, "maj@k": acc + 0.1,
            "pass@k": acc + 0.3, "k": 8, "distinct_correct": 2 * acc, "eval_tokens": 900, **extra}


def train_row(it: int, tokens: int, reward: float) -> dict:
    return {"iteration": it, "kind": "train", "cumulative_tokens": tokens, "train_reward": reward,
            "search_tokens": 5000, "n_traces": 64, "loss": 1.2}


def full_run(run: Path) -> Path:
    return write_metrics(run, [
        eval_row(0, 0, 0.1, **{"rerank@k": 0.2}),
        train_row(1, 5000, 0.15), eval_row(1, 5000, 0.2, **{"rerank@k": 0.3}),
        train_row(2, 10000, 0.3), eval_row(2, 10000, 0.25, **{"rerank@k": 0.35}),
    ])


def test_every_figure_is_drawn_against_iteration_and_tokens(tmp_path: Path) -> None:
    written = plot_run(full_run(tmp_path / "run"))
    names = sorted(p.name for p in written)
    assert names == sorted(f"{stem}_vs_{axis}.png" for stem in ("accuracy", "distinct_correct", "train_reward")
                           for axis in ("iteration", "tokens"))
    for path in written:
        image = imread(path)
        assert path.parent == tmp_path / "run" / "plots"
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas


def test_points_follow_the_rows_and_skip_missing_keys(tmp_path: Path) -> None:
    rows = read_metrics(full_run(tmp_path / "run") / "metrics.jsonl")
    assert points(rows, "eval", "cumulative_tokens", "maj@1") == ([0, 5000, 10000], [0.1, 0.2, 0.25])
    assert points(rows, "train", "iteration", "train_reward") == ([1, 2], [0.15, 0.3])
    rows[2].pop("maj@1")
    assert points(rows, "eval", "iteration", "maj@1") == ([0, 2], [0.1, 0.25])


def test_missing_keys_are_skipped_not_errors(tmp_path: Path) -> None:
    run = write_metrics(tmp_path / "run", [
        {"iteration": 0, "kind": "eval", "maj@1": 0.1, "pass@k": 0.3},       # no tokens, no k
        {"iteration": 1, "kind": "train", "cumulative_tokens": 100},            # no reward
        "",
        {"iteration": 1, "kind": "eval", "cumulative_tokens": 100, "maj@1": 0.2, "pass@k": None},
    ])
    names = sorted(p.name for p in plot_run(run))
    assert names == ["accuracy_vs_iteration.png", "accuracy_vs_tokens.png"]


@pytest.mark.parametrize(("line", "message"), [
    ("{oops", "metrics.jsonl:2: not JSON"),
    ("[1, 2]", "metrics.jsonl:2: expected a JSON object, found list"),
    ('{"iteration": 1, "kind": "eval", "maj@1": "high"}', "metrics.jsonl:2: 'maj@1' must be a number"),
])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path: Path, line: str, message: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = write_metrics(tmp_path / "run", [eval_row(0, 0, 0.1), line])
    with pytest.raises(ValueError, match=message):
        plot_run(run)
    assert main([str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {run / 'metrics.jsonl'}:2:")


def test_a_folder_without_metrics_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        plot_run(tmp_path)


def hydra_folder(run: Path, *overrides: str) -> Path:
    """`.hydra/config.yaml` and `.hydra/hydra.yaml` of a real composition, as a Hydra run writes them."""
    cfg = composed(*overrides, hydra=True)
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save({"hydra": cfg.hydra}, run / ".hydra" / "hydra.yaml")
    del cfg.hydra
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    return run


def test_titles_name_task_policy_strategy_trainer_and_seed(tmp_path: Path) -> None:
    run = hydra_folder(full_run(tmp_path / "15-02-41"), "task=arith", "search=mcts", "trainer=ppo", "seed=1")
    assert run_title(run) == "arith · tiny · mcts · ppo · seed 1"
    rows = read_metrics(run / "metrics.jsonl")
    assert draw(rows, "accuracy", "tokens", run_title(run)).axes[0].get_title() == "arith · tiny · mcts · ppo · seed 1\naccuracy"
    assert run_title(full_run(tmp_path / "16-00-00")) == "16-00-00"  # no .hydra: the folder's name


def test_fractions_run_zero_to_one_and_counts_start_at_zero_unless_zoomed(tmp_path: Path) -> None:
    rows = read_metrics(full_run(tmp_path / "run") / "metrics.jsonl")  # distinct 0.2-0.5, reward 0.15-0.3
    for stem in ("accuracy", "train_reward"):
        assert draw(rows, stem, "iteration", "t").axes[0].get_ylim() == pytest.approx((-0.02, 1.02))
    low, high = draw(rows, "distinct_correct", "iteration", "t").axes[0].get_ylim()
    assert low == pytest.approx(-0.02) and 0.5 < high < 1.0
    low, high = draw(rows, "train_reward", "iteration", "t", zoom=True).axes[0].get_ylim()
    assert 0.1 < low < 0.15 and 0.3 < high < 0.4
    assert main([str(tmp_path / "run"), "--zoom"]) == 0
