"""An easy Countdown setting and a briefly SFT'd tiny base for end-to-end trainer tests.

The base is built through `training.base_model.tiny_base`, so it is cached (under
$PLATEAU_CACHE, default ~/.cache/plateau) and built once per machine."""

from search import SearchResult
from tasks.countdown import Countdown
from training.base_model import tiny_base

TASK = {"_target_": "tasks.countdown.Countdown", "min_numbers": 3, "max_numbers": 3, "number_range": [1, 5],
        "target_range": [2, 12], "train_size": 100, "test_size": 20, "reference_count": 4}


def easy_task() -> Countdown:
    kwargs = {k: v for k, v in TASK.items() if k != "_target_"}
    return Countdown(**kwargs)


def easy_policy():
    """1M Llama fine-tuned on up to 4 reference traces of all 100 problems (180 examples) for 50
    epochs: it samples correct traces about a third of the time.
    (At lr 3e-3 the same model never learns to read the prompt's numbers.)"""
    return tiny_base(TASK, size="1m", init="sft", sft_problems=100, traces_per_problem=4,
                     sft={"epochs": 50, "batch_size": 16, "lr": 1e-3}, seed=0, progress=False)


def mean_reward(results: list[SearchResult]) -> float:
    traces = [t for r in results for t in r.traces()]
    return sum(t.reward for t in traces) / max(1, len(traces))
