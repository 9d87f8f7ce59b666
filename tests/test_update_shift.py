"""logp_shift_valid / logp_shift_invalid: how a round's update moved the likelihood of the
round's own traces, measured on a real tiny policy before and after a real SFT step."""

import pytest

from fixed_results import searched
from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from tasks.countdown import Countdown
from training.sft import SFTConfig, sft
from training.update_shift import draw_probe, logp_shift, round_traces, trace_logps


@pytest.fixture(scope="module")
def round_results():
    """Four problems, each with its reference trace at reward 1 (valid) and the reference trace
    of a fifth to eighth problem at reward 0 (invalid for it, and a text the fine-tuning never sees)."""
    task = Countdown(train_size=40, test_size=10, seed=3)
    problems = task.problems("train", limit=8)
    refs = [task.reference_traces(p)[0] for p in problems]
    results = [searched(p, task.prompt(p), [(refs[i], 1.0), (refs[i + 4], 0.0)], answer=task.extract_answer)
               for i, p in enumerate(problems[:4])]
    return task, results


def test_fine_tuning_on_the_valid_traces_raises_them_more_than_the_invalid(round_results):
    task, results = round_results
    model, tokenizer = build_tiny_model("1m", seed=0)
    policy = HFPolicy(model, tokenizer)
    probe = draw_probe(round_traces(results), 256, seed=0)
    assert sorted(valid for _, _, valid in probe) == [False] * 4 + [True] * 4
    before = trace_logps(policy, probe)
    sft(model, tokenizer, [(prompt, text) for prompt, text, valid in probe if valid],
        SFTConfig(epochs=20, batch_size=4, lr=3e-3), seed=0)
    shift = logp_shift(probe, before, trace_logps(policy, probe))
    assert shift["logp_shift_valid"] > 10  # nats a trace: ~40-character traces learnt by heart
    assert shift["logp_shift_valid"] > shift["logp_shift_invalid"] + 5


def test_the_probe_is_capped_per_kind_and_a_missing_kind_is_none(round_results):
    task, results = round_results
    probe = draw_probe(round_traces(results), 3, seed=1)
    assert sorted(valid for _, _, valid in probe) == [False] * 3 + [True] * 3
    assert draw_probe(round_traces(results), 3, seed=1) == probe  # seeded
    assert draw_probe(round_traces(results), 0, seed=1) == []  # update_shift_traces=0: off
    assert logp_shift([], [], []) == {"logp_shift_valid": None, "logp_shift_invalid": None}
    only_valid = [x for x in probe if x[2]]
    assert logp_shift(only_valid, [-5.0] * 3, [-4.0] * 3) == {"logp_shift_valid": 1.0, "logp_shift_invalid": None}
