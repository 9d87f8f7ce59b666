"""cluster=ray on a local Ray (2 CPUs): rollout workers are real actors with real tiny-model
replicas. Whole `training.loop.run`s are compared through what they write (metrics.jsonl,
traces/). Data-parallel training (Ray Train) is tests/test_ray_train.py."""

import json
import os
import signal
import threading
import time

import pytest

from composing import composed
from tiny_run import TINY_RUN
from training.cluster import build_searcher
from training.config_check import check_training_config

ray = pytest.importorskip("ray", reason='pip install -e ".[ray]"')
from local_ray import local_ray as start_local_ray  # noqa: E402  (needs ray)

from training.cluster.rollouts import shard_bounds, shard_seed  # noqa: E402  (needs ray)

# Two iterations, so the second searches with weights the driver trained and pushed;
# good_threshold 0 keeps every trace, so EI's SFT changes the weights even at reward 0.
RUN = [o for o in TINY_RUN if not o.startswith(("logger", "iterations", "train_problems"))] + [
    "iterations=2", "train_problems=6", "search.n=4", "search.batch=4", "search.max_new_tokens=32",
    "trainer.good_threshold=0.0", "trainer.sft.epochs=1"]


def config(*overrides):
    return composed(*RUN, *overrides)


def ray_config(workers, *overrides):
    return config("cluster=ray", f"cluster.rollout_workers={workers}", *overrides)


def rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_time")} for line in lines]


def traces(run_dir, iteration):
    return [json.loads(line) for line in (run_dir / "traces" / f"iter_{iteration:03d}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def local_ray():
    with start_local_ray(2) as started:
        yield started


@pytest.fixture(scope="module")
def runs(local_ray, tmp_path_factory):
    """The same run in this process, on 1 Ray worker, and twice on 2 Ray workers; the second
    time the driver stops after iteration 1 and a new one resumes it (new workers, which
    must get the checkpoint's weights)."""
    from training.loop import run

    root = tmp_path_factory.mktemp("ray_runs")
    made = {name: root / name for name in ("local", "ray1", "ray2", "ray2_again")}
    for name, cfg in [("local", config()), ("ray1", ray_config(1)), ("ray2", ray_config(2)),
                      ("ray2_again", ray_config(2, "iterations=1")), ("ray2_again", ray_config(2, "resume=true"))]:
        run(cfg, made[name])
    return made


def test_shards_are_contiguous_and_cover_every_problem_once():
    assert shard_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert shard_bounds(2, 3) == [(0, 1), (1, 2)]  # no empty shard is sent
    assert shard_seed(11, 0) == 11 and len({shard_seed(11, i) for i in range(8)}) == 8


def test_bad_cluster_config_is_one_line_naming_the_key():
    with pytest.raises(ValueError, match=r"^config error: cluster\.rollout_workers=0 is not allowed; expected an integer >= 1$"):
        build_searcher(ray_config(2, "cluster.rollout_workers=0"), {})
    with pytest.raises(ValueError, match=r"cluster\.kind must be one of \('local', 'ray'\), got 'slurm'"):
        build_searcher(ray_config(2, "cluster.kind=slurm"), {})
    assert check_training_config(ray_config(2)) is None
    with pytest.raises(SystemExit) as exit_:
        check_training_config(ray_config(2, "cluster.cpus_per_worker=0"))
    assert exit_.value.code == 2


@pytest.mark.slow
def test_same_seed_and_worker_count_give_identical_runs_even_resumed(runs):
    assert rows(runs["ray2"]) == rows(runs["ray2_again"])
    assert [r["rollout_workers"] for r in rows(runs["ray2"]) if r["kind"] == "train"] == [2, 2]
    for iteration in (1, 2):
        assert traces(runs["ray2"], iteration) == traces(runs["ray2_again"], iteration)


@pytest.mark.slow
def test_one_ray_worker_searches_what_the_single_process_searches(runs):
    """Shard 0 keeps the iteration's seed, and iteration 2 searches with the weights the
    driver trained in iteration 1 and pushed: the traces of both iterations match."""
    local, ray1 = rows(runs["local"]), rows(runs["ray1"])
    assert traces(runs["local"], 2) == traces(runs["ray1"], 2)
    assert traces(runs["local"], 1) == traces(runs["ray1"], 1)
    assert traces(runs["local"], 1) != traces(runs["local"], 2)  # training changed what iteration 2 sampled
    assert [r for r in local if r["kind"] == "eval"] == [r for r in ray1 if r["kind"] == "eval"]


@pytest.mark.slow
def test_one_and_two_workers_search_the_same_problems_with_the_same_accounting(runs):
    for name in ("local", "ray1", "ray2"):
        train_rows = [r for r in rows(runs[name]) if r["kind"] == "train"]
        for row in train_rows:
            found = traces(runs[name], row["iteration"])
            assert row["search_tokens"] == sum(t["tokens"] for t in found) > 0
            assert row["n_traces"] == len(found) == 6 * 4
            assert row["search_calls"] == 1  # n = batch: one batched call per problem
    ids = {name: [t["problem_id"] for t in traces(runs[name], 1)] for name in runs}
    assert ids["ray1"] == ids["ray2"] == ids["local"] and len(set(ids["ray2"])) == 6


def kill_first_searching_worker(name, killed, stop):
    """Kill worker `name`'s process the first time it reports a shard in progress."""
    while not stop.is_set():
        try:
            state = ray.get(ray.get_actor(name).state.remote(), timeout=10)
        except (ValueError, ray.exceptions.RayError):
            time.sleep(0.05)  # not created yet, or busy starting
            continue
        if state["shard"] is not None:
            os.kill(state["pid"], signal.SIGKILL)
            killed.append(state)
            return
        time.sleep(0.01)


@pytest.mark.slow
def test_a_worker_killed_mid_iteration_is_restarted_and_its_shard_searched_once(runs, tmp_path):
    from training.loop import run

    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_first_searching_worker, args=("plateau-rollout-1", killed, stop))
    killer.start()
    try:
        run(ray_config(2), tmp_path)
    finally:
        stop.set()
        killer.join()
    assert killed and killed[0]["shard"] == 1
    train_rows = [r for r in rows(tmp_path) if r["kind"] == "train"]
    assert [r["shards_retried"] for r in train_rows] == [1, 0]
    for iteration in (1, 2):  # every problem searched once, and the re-run shard drew what it would have
        found = traces(tmp_path, iteration)
        assert [t["problem_id"] for t in found] == [t["problem_id"] for t in traces(runs["ray2"], iteration)]
        assert found == traces(runs["ray2"], iteration)
    expected = [{**r, "shards_retried": 1} if r["kind"] == "train" and r["iteration"] == 1 else r
                for r in rows(runs["ray2"])]
    assert rows(tmp_path) == expected  # the same run, one retried shard apart
