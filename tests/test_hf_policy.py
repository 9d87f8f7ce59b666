"""HFPolicy and its batched engine, on a real 1M-parameter tiny Llama.

The model gets a few SFT steps on a fixed step-delimited text, so greedy output is
peaked (no near-ties that rounding could flip) and contains newlines and "->" stops.
"""

import pytest
import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model

TRAINING_TEXT = "3+4=7 -> 7*2=14\n14-5=9 -> 9+1=10\n" * 4
PROMPTS = ["3+4=", "14-5=9 ", "9+1", "7*2=14\n1"]


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    model, tok = build_tiny_model("1m", seed=0)
    ids = torch.tensor([tok(TRAINING_TEXT)["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return HFPolicy(model.eval(), tok)


def _flat(results):
    return [s for per_prompt in results for s in per_prompt]


def test_encodings_are_the_ids_the_sampler_fed_and_produced(policy):
    """The `TrainablePolicy` half of the contract that rollouts rely on: a prompt's ids are
    what the engine fed (the tokenizer with special tokens), a sampled text re-encodes to
    the sampled ids, and teacher-forced log-probs of that text are the recorded ones."""
    prompt = PROMPTS[0]
    assert policy.encode_prompt(prompt) == policy.tokenizer(prompt)["input_ids"]
    assert policy.encode_prompt(prompt)[0] == policy.tokenizer.bos_token_id
    samples = [x for x in policy.sample([prompt], n=4, max_new_tokens=12, stop=["\n"], seed=0)[0]
               if x.finish_reason != "eos"]
    assert samples
    for x in samples:
        assert policy.encode_continuation(x.text) == x.token_ids
        assert policy.logprobs([prompt], [x.text])[0] == pytest.approx(x.logprobs, abs=1e-4)


def test_save_load_round_trip_gives_identical_logits(policy, tmp_path):
    policy.save(tmp_path)
    loaded = HFPolicy.from_pretrained(tmp_path)
    ids = torch.tensor([policy.encode_prompt("3+4=7 -> 7*2=14\n")])
    assert loaded.encode_prompt("3+4=7 -> 7*2=14\n") == ids[0].tolist()
    with torch.no_grad():
        assert torch.equal(policy.model(ids).logits, loaded.model(ids).logits)


def test_from_pretrained_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        HFPolicy.from_pretrained(tmp_path / "nope")


def test_greedy_matches_model_generate_token_for_token(policy):
    results = policy.sample(PROMPTS, n=1, max_new_tokens=24, temperature=0)
    for prompt, (sample,) in zip(PROMPTS, results):
        ids = torch.tensor([policy.encode_prompt(prompt)])
        out = policy.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False
        )
        assert sample.token_ids == out[0, ids.shape[1] :].tolist()


def test_sampled_logprobs_equal_teacher_forcing(policy):
    results = policy.sample(PROMPTS, n=3, max_new_tokens=30, temperature=1.3, top_p=0.95, seed=5)
    pairs = [(policy.encode_prompt(p), s.token_ids) for p, per in zip(PROMPTS, results) for s in per]
    forced = policy.sequence_logprobs(pairs)
    for sample, reference in zip(_flat(results), forced):
        assert len(sample.logprobs) == len(sample.token_ids)
        assert sample.logprobs == pytest.approx(reference, abs=1e-4)


def test_text_logprobs_score_a_stopped_step(policy):
    results = policy.sample(PROMPTS, n=2, max_new_tokens=30, temperature=1.0, stop=["\n"], seed=2)
    stopped = [(p, s) for p, per in zip(PROMPTS, results) for s in per if s.finish_reason == "stop"]
    assert stopped
    scored = policy.logprobs([p for p, _ in stopped], [s.text for _, s in stopped])
    for (_, sample), values in zip(stopped, scored):
        assert values == pytest.approx(sample.logprobs, abs=1e-4)


def test_same_seed_reproduces_samples_and_different_seed_differs(policy):
    a = policy.sample(PROMPTS, n=4, max_new_tokens=20, temperature=1.0, seed=11)
    b = policy.sample(PROMPTS, n=4, max_new_tokens=20, temperature=1.0, seed=11)
    c = policy.sample(PROMPTS, n=4, max_new_tokens=20, temperature=1.0, seed=12)
    assert [s.token_ids for s in _flat(a)] == [s.token_ids for s in _flat(b)]
    assert [s.token_ids for s in _flat(a)] != [s.token_ids for s in _flat(c)]


def test_newline_stop_is_honoured_and_included(policy):
    (sample,), = policy.sample(["3+4="], max_new_tokens=40, temperature=0, stop=["\n"])
    assert sample.finish_reason == "stop"
    assert sample.text.endswith("\n") and sample.text.count("\n") == 1
    assert policy.tokenizer.decode(sample.token_ids) == sample.text


def test_multi_character_stop_split_across_tokens_is_honoured(policy):
    (free,), = policy.sample(["3+4="], max_new_tokens=40, temperature=0)
    assert "->" in free.text  # the model does emit the delimiter, one character per token
    (sample,), = policy.sample(["3+4="], max_new_tokens=40, temperature=0, stop=["->"])
    assert sample.finish_reason == "stop"
    assert sample.text == free.text[: free.text.index("->") + 2]
    assert len(sample.token_ids) == len(sample.text)


def test_earliest_of_several_stops_wins(policy):
    (free,), = policy.sample(["3+4="], max_new_tokens=40, temperature=0)
    (sample,), = policy.sample(["3+4="], max_new_tokens=40, temperature=0, stop=["\n", "->"])
    first = min(free.text.index("\n") + 1, free.text.index("->") + 2)
    assert sample.text == free.text[:first]


def test_n_samples_share_the_prefix_and_equal_repeated_prompts(policy):
    shared = policy.sample(PROMPTS, n=3, max_new_tokens=25, temperature=0, stop=["\n"])
    repeated = policy.sample([p for p in PROMPTS for _ in range(3)], n=1, max_new_tokens=25, temperature=0, stop=["\n"])
    assert [s.token_ids for s in _flat(shared)] == [s.token_ids for s in _flat(repeated)]
    assert [s.text for s in _flat(shared)] == [s.text for s in _flat(repeated)]
    for per_prompt in shared:
        assert len(per_prompt) == 3


def test_batched_rows_equal_single_prompt_calls(policy):
    batched = policy.sample(PROMPTS, n=1, max_new_tokens=25, temperature=0, stop=["->"])
    for prompt, (sample,) in zip(PROMPTS, batched):
        (alone,), = policy.sample([prompt], n=1, max_new_tokens=25, temperature=0, stop=["->"])
        assert alone.token_ids == sample.token_ids
        assert alone.logprobs == pytest.approx(sample.logprobs, abs=1e-4)


def test_finish_reasons(policy):
    eos = policy.tokenizer.eos_token_id
    (length,), = policy.sample(["3+4="], max_new_tokens=3, temperature=0)
    assert length.finish_reason == "length" and len(length.token_ids) == 3
    # A model whose lm_head favours <eos> finishes with "eos"; the EOS id is kept, its text is not.
    model, tok = build_tiny_model("1m")
    with torch.no_grad():
        model.lm_head.weight[eos] += 5 * model.model.norm.weight
    (ended,), = HFPolicy(model, tok).sample(["3+4="], max_new_tokens=10, temperature=0)
    assert ended.finish_reason == "eos"
    assert ended.token_ids[-1] == eos and ended.text == tok.decode(ended.token_ids, skip_special_tokens=True)


def test_max_new_tokens_per_prompt_caps_each_prompt(policy):
    results = policy.sample(PROMPTS, n=2, max_new_tokens=10, temperature=1.0, seed=0, max_new_tokens_per_prompt=[0, 3, 50, 7])
    caps = [0, 3, 10, 7]
    for cap, per_prompt in zip(caps, results):
        for sample in per_prompt:
            assert len(sample.token_ids) <= cap
    assert all(s.text == "" and s.token_ids == [] and s.finish_reason == "length" for s in results[0])
    with pytest.raises(ValueError, match="max_new_tokens_per_prompt"):
        policy.sample(PROMPTS, max_new_tokens_per_prompt=[1])


def test_temperature_zero_ignores_seed(policy):
    a = policy.sample(PROMPTS, n=2, max_new_tokens=15, temperature=0, seed=1)
    b = policy.sample(PROMPTS, n=2, max_new_tokens=15, temperature=0, seed=2)
    assert [s.token_ids for s in _flat(a)] == [s.token_ids for s in _flat(b)]
