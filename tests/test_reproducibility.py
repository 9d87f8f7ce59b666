"""Same seed, same machine, same thread count: the same run. Two processes run the same tiny
`training.run` config (search, EI training, evaluation, checkpoint); every metrics row and
every trace must be identical -- only wall times (keys ending in `_time`) may differ. What is and is not
deterministic across machines: docs/reproducibility.md."""

import json

import pytest



def rows_without_times(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("_time")} for row in rows]


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics_and_traces(tiny_runs):
    first, second = tiny_runs
    rows = rows_without_times(first)
    assert [(r["iteration"], r["kind"]) for r in rows] == [(0, "eval"), (1, "train"), (1, "eval")]
    assert rows == rows_without_times(second)
    train = json.loads((first / "metrics.jsonl").read_text().splitlines()[1])
    assert train["search_time"] > 0 and train["update_time"] > 0  # the round's two parts ...
    assert train["search_time"] + train["update_time"] == pytest.approx(train["train_time"])  # ... add up to it
    assert train["logp_shift_wrong"] is not None and "logp_shift_correct" in train  # training.update_shift
    traces = sorted(p.relative_to(first) for p in (first / "traces").glob("*.jsonl"))
    assert traces, "the run wrote no traces"
    for path in traces:
        text = (first / path).read_text()
        assert text.count("\n") == rows[1]["n_traces"] > 0
        assert text == (second / path).read_text(), path
