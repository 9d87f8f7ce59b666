"""Fixtures shared by several test modules."""

import pytest

from policies.tiny import build_tiny_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A randomly initialised 1M tiny Llama saved as a plain HF folder (weights + tokenizer)."""
    model, tokenizer = build_tiny_model("1m", seed=0)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
