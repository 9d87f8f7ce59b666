"""The engine's shortcuts: the stop-candidate table never misses a stop, bf16 sampling
stays close to the fp32 model and follows weight updates."""

import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from policies.hf import HFPolicy
from policies.stop_table import StopTable
from policies.tiny import build_tiny_model

PROMPTS = ["12+7=", "3*4=", "100-1=", "8/2="]


def _byte_level_bpe() -> Tokenizer:
    """A real byte-level BPE: multi-character tokens and characters split over tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["Step 1: 3+4=7 -> 7*2=14\n", "Schritt 2: größer als 9 -> ja\n", "答案 是 24 ->\n"] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    return tok


def _first_stop_by_table(table: StopTable, ids: list[int]) -> str | None:
    """What the engine does: check the row only on steps whose token is a candidate."""
    row = torch.tensor(ids)
    for step in range(len(ids)):
        if len(table.candidates(row[step : step + 1])):
            text = table.stopped_text(row, step + 1)
            if text is not None:
                return text
    return None


@pytest.mark.parametrize("stop", [["\n"], ["->"], ["ß"], ["答案", "4 "]])
def test_candidate_table_finds_the_first_stop_of_the_full_text(stop):
    tok = _byte_level_bpe()
    table = StopTable(tok, stop, tok.get_vocab_size())
    rng = random.Random(0)
    found = 0
    for _ in range(300):
        ids = [rng.randrange(tok.get_vocab_size()) for _ in range(rng.randrange(1, 30))]
        expected = None
        for length in range(1, len(ids) + 1):  # the earliest prefix whose text holds a stop
            text = tok.decode(ids[:length])
            if any(s in text for s in stop):
                expected = text[: min(text.find(s) + len(s) for s in stop if s in text)]
                break
        assert _first_stop_by_table(table, ids) == expected
        found += expected is not None
    assert found > 10


def test_character_tokenizer_table_is_exact():
    _, tok = build_tiny_model("1m")
    table = StopTable(tok.backend_tokenizer, ["->", "\n"], len(tok))
    expected = {tok.convert_tokens_to_ids(c) for c in (">", "\n")}
    assert set(table.table.nonzero()[:, 0].tolist()) == expected


def test_bf16_sampling_logprobs_are_close_to_fp32_teacher_forcing():
    model, tok = build_tiny_model("1m", seed=3)
    policy = HFPolicy(model, tok, sample_dtype="bfloat16")
    results = policy.sample(PROMPTS, n=3, max_new_tokens=20, temperature=1.0, seed=1, stop=["\n"])
    pairs = [(policy.encode_prompt(p), s.token_ids) for p, per in zip(PROMPTS, results) for s in per]
    forced = policy.sequence_logprobs(pairs)
    samples = [s for per in results for s in per]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # training weights untouched
    for sample, reference in zip(samples, forced):
        assert sample.logprobs == pytest.approx(reference, abs=3e-2)
    worst = max(abs(a - b) for s, r in zip(samples, forced) for a, b in zip(s.logprobs, r))
    assert worst > 0  # it did sample in bf16


def test_bf16_copy_follows_in_place_weight_updates():
    model, tok = build_tiny_model("1m", seed=4)
    policy = HFPolicy(model, tok, sample_dtype="bfloat16", prefix_cache_tokens=1000)
    before = policy.sample(PROMPTS, max_new_tokens=8, temperature=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)
    after = policy.sample(PROMPTS, max_new_tokens=8, temperature=0)
    fresh = HFPolicy(model, tok, sample_dtype="bfloat16").sample(PROMPTS, max_new_tokens=8, temperature=0)
    assert [s.token_ids for per in after for s in per] == [s.token_ids for per in fresh for s in per]
    assert [s.token_ids for per in after for s in per] != [s.token_ids for per in before for s in per]


def test_unknown_sample_dtype_is_named():
    model, tok = build_tiny_model("1m")
    with pytest.raises(ValueError, match="sample_dtype"):
        HFPolicy(model, tok, sample_dtype="int3")


def test_kv_buffer_growth_keeps_results_exact(monkeypatch):
    """Rows outliving the first KV allocation are moved to a larger one, mid-decode."""
    model, tok = build_tiny_model("1m", seed=5)
    policy = HFPolicy(model, tok)
    calls = [(PROMPTS, 2), (LONG_PROMPTS, 3)]  # prompt KV copied per row, then shared (n copies > 30 tokens)
    references = [policy.sample(p, n=n, max_new_tokens=30, temperature=1.0, seed=3, stop=["\n"]) for p, n in calls]
    monkeypatch.setattr("policies.engine.INITIAL_DECODE_COLUMNS", 3)
    for (prompts, n), reference in zip(calls, references):
        grown = policy.sample(prompts, n=n, max_new_tokens=30, temperature=1.0, seed=3, stop=["\n"])
        samples = [s for per in grown for s in per]
        assert max(s.num_tokens for s in samples) > 6  # it grew at least twice
        assert [s.token_ids for s in samples] == [s.token_ids for per in reference for s in per]
        pairs = [(policy.encode_prompt(p), s.token_ids) for p, per in zip(prompts, grown) for s in per]
        for sample, forced in zip(samples, policy.sequence_logprobs(pairs)):
            assert sample.logprobs == pytest.approx(forced, abs=1e-4)
    (greedy,), = policy.sample(["3*4="], max_new_tokens=20, temperature=0)
    ids = torch.tensor([policy.encode_prompt("3*4=")])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    assert greedy.token_ids == out[0, ids.shape[1] :].tolist()


LONG_PROMPTS = ["12+7=", "Use 4 7 8 8 to make 24.\nStep 1: 8-4=4\n", "3*4=", "100-1=99\n99-9=", "Use 2 3 to make 5.\n"]


def _prefill_passes(policy: HFPolicy) -> list[tuple[int, int]]:
    """(rows, query tokens) of every multi-token forward of the engine's sampler."""
    passes = []
    policy.engine._sampler.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)) if kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True,
    )
    return passes


def _rounds(policy: HFPolicy) -> list:
    """Two seeded rounds; the second's prompts extend the first's samples (prefix-cache hits)."""
    first = policy.sample(LONG_PROMPTS, n=2, max_new_tokens=12, temperature=1.0, seed=4, stop=["\n"])
    prompts = [p + s.text for p, per in zip(LONG_PROMPTS, first) for s in per]
    second = policy.sample(prompts, n=2, max_new_tokens=12, temperature=1.0, seed=5, stop=["\n"])
    return [s for result in (first, second) for per in result for s in per]


@pytest.mark.parametrize("cache_tokens", [0, 10_000])
def test_chunked_prefill_gives_the_unchunked_samples_and_logprobs(cache_tokens):
    model, tok = build_tiny_model("1m", seed=6)
    whole = HFPolicy(model, tok, prefix_cache_tokens=cache_tokens)
    chunked = HFPolicy(model, tok, prefix_cache_tokens=cache_tokens, prefill_tokens=40)
    whole_passes, chunked_passes = _prefill_passes(whole), _prefill_passes(chunked)
    reference, samples = _rounds(whole), _rounds(chunked)
    assert len(whole_passes) == 2 and len(chunked_passes) >= 5
    assert all(rows * tokens <= 40 or rows == 1 for rows, tokens in chunked_passes)
    assert [s.token_ids for s in samples] == [s.token_ids for s in reference]
    assert [s.finish_reason for s in samples] == [s.finish_reason for s in reference]
    for sample, ref in zip(samples, reference):
        assert sample.logprobs == pytest.approx(ref.logprobs, abs=1e-5)


def test_shared_prompt_kv_gives_the_samples_of_copied_prompts(monkeypatch):
    """n samples of one prompt read one copy of its KV; they must equal n copies of the prompt."""
    model, tok = build_tiny_model("1m", seed=7)
    policy = HFPolicy(model, tok)
    import policies.engine

    allocated = []

    class Recording(policies.engine.DecodeCache):
        def __init__(self, config, prompts, *args):
            super().__init__(config, prompts, *args)
            allocated.append((prompts.mask.shape[0], self.shared, self.keys[0].shape[0]))

    monkeypatch.setattr(policies.engine, "DecodeCache", Recording)
    shared = policy.sample(LONG_PROMPTS, n=3, max_new_tokens=20, temperature=1.0, seed=8, stop=["\n"])
    repeated = [p for p in LONG_PROMPTS for _ in range(3)]
    # one sample per prompt, as a tree round asks: its prompts' KV is read in place too
    single = policy.sample(repeated, n=1, max_new_tokens=20, temperature=1.0, seed=8, stop=["\n"])
    monkeypatch.setattr(policies.engine, "shares_prompt_kv", lambda *_: False)  # the copying path
    copied = policy.sample(repeated, n=1, max_new_tokens=20, temperature=1.0, seed=8, stop=["\n"])
    rows = 3 * len(LONG_PROMPTS)  # (prompts holding KV, shared, rows): one prompt KV per prompt, then per row
    assert allocated == [(len(LONG_PROMPTS), True, rows), (rows, True, rows), (rows, False, rows)]
    assert [s.token_ids for per in single for s in per] == [s.token_ids for per in copied for s in per]
    shared, copied = [s for per in shared for s in per], [s for per in copied for s in per]
    assert len({tuple(s.token_ids) for s in shared}) > len(LONG_PROMPTS)  # samples of a prompt differ
    assert [s.token_ids for s in shared] == [s.token_ids for s in copied]
    assert [s.text for s in shared] == [s.text for s in copied]
    for a, b in zip(shared, copied):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_decode_buffer_holds_what_the_call_can_generate(monkeypatch):
    model, tok = build_tiny_model("1m", seed=8)
    import policies.engine

    columns = []

    class Recording(policies.engine.DecodeCache):
        def __init__(self, *args):
            super().__init__(*args)
            columns.append(self.keys[0].shape[2] - self.head)

    monkeypatch.setattr(policies.engine, "DecodeCache", Recording)
    policy = HFPolicy(model, tok)
    policy.sample(LONG_PROMPTS, n=2, max_new_tokens_per_prompt=[3, 5, 0, 2, 1], max_new_tokens=100, temperature=1.0, seed=1)
    policy.sample(LONG_PROMPTS, n=2, max_new_tokens=500, temperature=1.0, seed=1)
    assert columns == [5, policies.engine.INITIAL_DECODE_COLUMNS]


def test_grouped_query_attention_matches_generate_and_teacher_forcing():
    """Shared-prefix attention pairs each query head with its KV head as repeat_kv does."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = build_tiny_model("1m")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    policy = HFPolicy(model, tok)
    results = policy.sample(LONG_PROMPTS, n=2, max_new_tokens=15, temperature=1.0, seed=2)
    pairs = [(policy.encode_prompt(p), s.token_ids) for p, per in zip(LONG_PROMPTS, results) for s in per]
    for sample, forced in zip([s for per in results for s in per], policy.sequence_logprobs(pairs)):
        assert sample.logprobs == pytest.approx(forced, abs=1e-4)
    (greedy,), = policy.sample([LONG_PROMPTS[1]], max_new_tokens=15, temperature=0)
    ids = torch.tensor([policy.encode_prompt(LONG_PROMPTS[1])])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=15, do_sample=False)
    assert greedy.token_ids == out[0, ids.shape[1] :].tolist()
