"""SFT's batches: the plain order is the seeded permutation it always was; grouping by
length pads less, visits every example once per epoch, and still learns."""

import pytest
import torch

from policies.tiny import build_tiny_model
from training.sft import GROUP_BATCHES, SFTConfig, batch_loss, collate, encode_pair, epoch_batches, sft


def padded(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_plain_batches_are_the_seeded_permutation_cut_in_order():
    lengths = list(range(3, 40))
    expected = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(4)).tolist()
    batches = epoch_batches(lengths, 8, False, torch.Generator().manual_seed(4))
    assert [i for b in batches for i in b] == expected and [len(b) for b in batches] == [8, 8, 8, 8, 5]


def test_grouped_batches_cover_the_epoch_once_and_pad_far_less():
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 260, (3 * GROUP_BATCHES * 8 + 5,), generator=rng).tolist()
    plain = epoch_batches(lengths, 8, False, torch.Generator().manual_seed(1))
    grouped = epoch_batches(lengths, 8, True, torch.Generator().manual_seed(1))
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))
    assert sorted(map(len, grouped)) == sorted(map(len, plain))  # groups hold whole batches: one short batch
    assert padded(grouped, lengths) < 0.1 * padded(plain, lengths)
    # the steps are not in length order: long and short batches alternate
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert sum(a < b for a, b in zip(longest, longest[1:])) > len(longest) // 4
    assert epoch_batches(lengths, 8, True, torch.Generator().manual_seed(1)) == grouped


def test_sft_grouped_by_length_fits_the_data_on_fewer_padded_tokens(monkeypatch):
    """Same examples, same steps: the grouped run computes fewer padded positions and fits
    the completions about as well as the plain run (token-mean loss over every example
    afterwards; the runs' own mean of batch losses would weigh tokens differently)."""
    import training.sft as module

    _, tok = build_tiny_model("1m", seed=0)
    examples = [(f"{i}+{i % 7}=", f"{i + i % 7}" + "." * (i % 23)) for i in range(96)]
    encoded = [encode_pair(tok, p, c) for p, c in examples]
    positions: list[int] = []
    monkeypatch.setattr(module, "collate", lambda *a: (b := collate(*a), positions.append(b["input_ids"].numel()))[0])
    seen = {}
    for group in (False, True):
        positions.clear()
        model = build_tiny_model("1m", seed=0)[0]
        stats = sft(model, tok, examples, SFTConfig(epochs=6, batch_size=8, lr=3e-3, group_by_length=group), seed=0)
        with torch.no_grad():
            fitted = float(batch_loss(model, collate(encoded, tok.pad_token_id)))
        seen[group] = (sum(positions), fitted, stats["sft_tokens"])
    assert seen[True][2] == seen[False][2] == 6 * sum(len(p) + len(c) for p, c in encoded)
    assert seen[True][0] < 0.8 * seen[False][0]
    assert seen[True][1] < 1.2 * seen[False][1] and seen[True][1] < 1.0  # both fit (the untrained loss is ~4.6)


def test_bf16_autocast_takes_the_fp32_step_to_bf16_precision_and_keeps_fp32_weights():
    """The same 4 steps in fp32 and under bf16 autocast: losses within bf16's precision,
    weights still fp32, and a different run (autocast really on: bf16 rounding moves them)."""
    _, tok = build_tiny_model("1m", seed=0)
    examples = [(f"{i}*{i % 5}=", f"{i * (i % 5)}") for i in range(32)]
    runs = {}
    for autocast in (None, "bfloat16"):
        model = build_tiny_model("1m", seed=0)[0]
        stats = sft(model, tok, examples, SFTConfig(epochs=1, batch_size=8, lr=1e-3, autocast=autocast), seed=0)
        runs[autocast] = (stats["loss"], model)
    (loss32, m32), (loss16, m16) = runs[None], runs["bfloat16"]
    assert abs(loss16 - loss32) < 0.02 * loss32
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(m32.parameters(), m16.parameters()))
    assert 0 < gap < 1e-2


def test_an_unknown_autocast_dtype_is_one_clear_error():
    with pytest.raises(ValueError, match=r"^sft\.autocast must be null or one of \['bfloat16'\], got 'float8'$"):
        SFTConfig(autocast="float8")


def test_the_orm_trains_in_length_groups_and_under_bf16_autocast_when_asked():
    """The ORM's fit reads the same two SFT options: grouped batches pad far less than the
    seeded permutation's, and bf16 autocast reaches the fp32 loss to bf16 precision with fp32
    weights (and is really on: the weights end elsewhere)."""
    from training.orm import ORMConfig, build_orm, train_orm

    rng = torch.Generator().manual_seed(0)
    sizes = torch.randint(4, 120, (320,), generator=rng).tolist()
    examples = [(("12+3=15 " * (n // 8 + 1))[:n] + "\n", float(n % 3 == 0)) for n in sizes]
    fits = {}
    for name, options in (("plain", {}), ("grouped", {"group_by_length": True}), ("bf16", {"autocast": "bfloat16"})):
        orm = build_orm(None, "tiny", "1m", seed=0, max_length=256)
        seen = []
        logits = orm.logits
        orm.logits = lambda texts, logits=logits: seen.append(list(texts)) or logits(texts)
        stats = train_orm(orm, examples, ORMConfig(epochs=1, batch_size=8, lr=1e-3, **options), seed=0)
        pad = sum(len(b) * max(map(len, b)) - sum(map(len, b)) for b in seen)
        fits[name] = stats, pad, {k: v.clone() for k, v in orm.state_dict().items()}
    (plain, plain_pad, plain_w), (_, grouped_pad, _), (bf16, _, bf16_w) = fits["plain"], fits["grouped"], fits["bf16"]
    assert grouped_pad < 0.25 * plain_pad
    assert bf16["orm_loss"] == pytest.approx(plain["orm_loss"], abs=0.02)
    assert all(w.dtype == torch.float32 for w in bf16_w.values())
    assert max(float((bf16_w[k] - plain_w[k]).abs().max()) for k in plain_w) > 1e-6
