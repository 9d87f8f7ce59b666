"""The `logger` option: TensorBoard event files and an MLflow file store hold every metric of
metrics.jsonl, read back with the libraries' own readers (EventAccumulator, MlflowClient)."""

import json
import os

import pytest
from omegaconf import OmegaConf

pytest.importorskip("tensorboard", reason='pip install -e ".[tracking]"')
pytest.importorskip("mlflow", reason='pip install -e ".[tracking]"')

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from training.tracking import metric_key, open_tracking, scalars  # noqa: E402

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses to read a file store without it
from mlflow.tracking import MlflowClient  # noqa: E402


def expected(rows):
    """(key, step) -> value of every numeric metric, as the run's metrics.jsonl holds it."""
    return {(key, row["iteration"]): value for row in rows for key, value in scalars(row).items()}


def tensorboard_values(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    pairs = [((tag, e.step), e.value) for tag in events.Tags()["scalars"] for e in events.Scalars(tag)]
    assert len(pairs) == len(dict(pairs)), "a (metric, step) was logged twice"
    return dict(pairs)


def mlflow_runs(store):
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("plateau")
    return client, client.search_runs([experiment.experiment_id])


def mlflow_values(client, run):
    pairs = [((m.key, m.step), m.value) for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]
    assert len(pairs) == len(dict(pairs)), "a (metric, step) was logged twice"
    return dict(pairs)


def test_metric_keys_are_one_name_in_every_backend():
    row = {"iteration": 2, "kind": "eval", "maj@1": 0.25, "k": 8, "loss": float("nan"), "note": "x", "auc": None}
    assert scalars(row) == {"eval/maj_at_1": 0.25, "eval/k": 8.0}
    assert metric_key("train", "pass@k") == "train/pass_at_k"


@pytest.mark.slow
def test_a_run_logs_every_metric_of_every_row_to_tensorboard_and_mlflow(tiny_runs):
    run = tiny_runs[0]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    want = expected(rows)
    assert {"train/train_reward", "eval/maj_at_1", "eval/pass_at_k"} <= {key for key, _ in want}
    assert {step for _, step in want} == {0, 1}
    assert tensorboard_values(run / "tensorboard") == pytest.approx(want, rel=1e-6)  # event files store float32
    client, [mlflow_run] = mlflow_runs(run / "mlruns")
    assert mlflow_values(client, mlflow_run) == want
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.tags["plateau.run_dir"] == str(run.resolve())
    config = client.download_artifacts(mlflow_run.info.run_id, "config.yaml", str(run / "downloaded"))
    assert OmegaConf.load(config).train_problems == 2


def test_a_resumed_run_continues_its_mlflow_run_and_sends_no_row_twice(tmp_path):
    cfg = OmegaConf.create({"logger": {
        "jsonl": {},
        "tensorboard": {"_target_": "training.tracking.TensorBoardLogger"},
        "mlflow": {"_target_": "training.tracking.MLflowLogger", "experiment": "plateau"}}})
    rows = [{"iteration": 0, "kind": "eval", "maj@1": 0.1},
            {"iteration": 1, "kind": "train", "train_reward": 0.2}, {"iteration": 1, "kind": "eval", "maj@1": 0.3}]
    first = open_tracking(cfg, tmp_path)
    first.log(rows[:1])
    first.log(rows[:2])
    first.close()
    resumed = open_tracking(cfg, tmp_path, already_logged=2)  # training.checkpoint.resume returned 2 rows
    resumed.log(rows)
    resumed.close()
    assert tensorboard_values(tmp_path / "tensorboard") == pytest.approx(expected(rows))
    client, runs = mlflow_runs(tmp_path / "mlruns")
    assert len(runs) == 1 and mlflow_values(client, runs[0]) == expected(rows)
