"""The tiny Llama builder and the character tokenizer."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from policies.tiny import CHARACTERS, build_tiny_model, char_tokenizer, count_parameters, tiny_config


def test_char_tokenizer_round_trips_task_text_exactly():
    tok = char_tokenizer()
    text = "Q: 3 + 4 * (2 - 1) = ?\nStep 1: 4*(2-1)=4\n\nAnswer: 7 ~{}[]|\\'\"`"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(ids) == len(text) + 1  # one token per character
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert "".join(tok.convert_ids_to_tokens(ids[1:])) == text


def test_every_vocabulary_character_is_its_own_token():
    tok = char_tokenizer()
    ids = tok("".join(CHARACTERS), add_special_tokens=False)["input_ids"]
    assert len(set(ids)) == len(CHARACTERS)
    assert tok.unk_token_id not in ids


def test_unknown_characters_become_unk():
    tok = char_tokenizer()
    assert tok("é", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


@pytest.mark.parametrize("size,low,high", [("1m", 0.8e6, 1.2e6), ("10m", 8e6, 12e6)])
def test_named_sizes_hit_their_parameter_counts(size, low, high):
    model, _ = build_tiny_model(size)
    assert low < count_parameters(model) < high
    assert not model.config.tie_word_embeddings


def test_50m_config_is_about_50m_parameters():
    config = tiny_config("50m")
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    params = 2 * config.vocab_size * h + n * (4 * h * h + 3 * h * i + 2 * h) + h
    assert 45e6 < params < 55e6


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown tiny model size"):
        tiny_config("7b")


def test_same_seed_same_weights():
    a, _ = build_tiny_model("1m", seed=3)
    b, _ = build_tiny_model("1m", seed=3)
    c, _ = build_tiny_model("1m", seed=4)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_saves_and_loads_as_an_ordinary_hf_folder(tmp_path):
    model, tok = build_tiny_model("1m")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    text = "12+30=42\n"
    assert loaded_tok(text)["input_ids"] == tok(text)["input_ids"]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
