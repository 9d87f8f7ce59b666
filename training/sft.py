"""Supervised fine-tuning on (prompt, completion) pairs, loss on the completion only.

Every trainer that fits a policy to text (the tiny base, Expert Iteration, RCRL, the SFT
part of anything else) goes through `sft`, and every trainer that needs per-token
log-probabilities of completions goes through `collate` and `labelled_logprobs`, so tokenisation,
padding and masking live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from training.core_algos import entropy_from_logits
from training.schema import AUTOCAST

IGNORE = -100


@dataclass
class SFTConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_length: int = 512
    group_by_length: bool = False  # batches of similar length (less padding); see `epoch_batches`
    autocast: str | None = None  # "bfloat16": forward and backward under bf16 autocast (fp32 weights and optimizer)

    def __post_init__(self):
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise ValueError(f"sft.autocast must be null or one of {list(AUTOCAST)}, got {self.autocast!r}")

    def autocast_context(self, device: str) -> torch.autocast:
        """The forward (and so the backward) under autocast to the `autocast` dtype when it is
        set; weights and optimizer state stay fp32."""
        dtype = getattr(torch, self.autocast or "bfloat16")  # the disabled context still takes a dtype
        return torch.autocast(device, dtype=dtype, enabled=self.autocast is not None)


GROUP_BATCHES = 50  # at most this many batches per length-sorted group, as transformers' LengthGroupedSampler


def encode_pair(tokenizer, prompt: str, completion: str, eos: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of `prompt` and of `completion` (plus EOS), tokenised separately so the
    completion ids are exactly what a sampler produces after that prompt."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if eos and tokenizer.eos_token_id is not None:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    return list(prompt_ids), list(completion_ids)


def epoch_batches(lengths: Sequence[int], batch_size: int, group_by_length: bool,
                  generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of example indices. Plain: a random permutation cut into
    batches. `group_by_length`: the permutation is cut into groups of at most
    `GROUP_BATCHES` batches and at least 4 groups an epoch (as transformers), each group
    sorted by length before it is cut into batches, and the batches of
    the epoch are shuffled, so a batch pads to a similar length while the gradient steps
    still visit short and long examples in random order (transformers' LengthGroupedSampler
    keeps each group's batches in length order instead)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    group = max(1, min(len(lengths) // (4 * batch_size), GROUP_BATCHES)) * batch_size
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: -lengths[i])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch: `input_ids`, `attention_mask`, and `labels` that are the
    completion tokens (IGNORE elsewhere). Over-long rows keep their completion's start:
    the prompt is cut from the left."""
    rows = []
    for prompt_ids, completion_ids in pairs:
        ids = prompt_ids + completion_ids
        labels = [IGNORE] * len(prompt_ids) + completion_ids
        if max_length is not None and len(ids) > max_length:
            cut = len(ids) - max_length
            ids, labels = ids[cut:], labels[cut:]
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def labelled_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p of the labelled tokens, shape (batch, length - 1), and the mask of
    labelled positions (same shape), from logits (batch, length, vocab) the caller's forward
    pass produced (it may need them for more: entropy, a value head). Position t scores
    token t + 1."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


@torch.no_grad()
def completion_entropy(model, tokenizer, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 32) -> float:
    """Mean per-token entropy of `model`'s next-token distribution over the completion
    tokens of (prompt ids, completion ids) pairs: how spread the policy is on its own
    samples (nan for no tokens). One no-grad pass, in eval mode."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        batch = collate(list(pairs[start : start + batch_size]), pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        mask = batch["labels"][:, 1:] != IGNORE
        total += float((entropy_from_logits(logits) * mask).sum())
        count += int(mask.sum())
    model.train(was_training)
    return total / count if count else float("nan")


def batch_loss(model, batch: dict[str, torch.Tensor], shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens of `batch`. With `shard=(rank, world)`
    this process runs only its contiguous slice of the rows, its token sum divided by the
    whole batch's labelled count and times `world`: DDP's gradient average over the world
    is then exactly the whole batch's gradient. A rank whose slice is empty runs one row
    at weight 0, so that it still joins the gradient all-reduce."""
    rank, world = shard
    if world == 1:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE)
    labelled = int((batch["labels"][:, 1:] != IGNORE).sum())
    rows = torch.tensor_split(torch.arange(len(batch["input_ids"])), world)[rank]
    weight = world / max(1, labelled) if len(rows) else 0.0
    rows = rows if len(rows) else torch.arange(1)
    logits = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows]).logits
    total = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][rows, 1:].flatten(),
                            ignore_index=IGNORE, reduction="sum")
    return total * weight


def _world_mean(loss: torch.Tensor) -> float:
    """The whole batch's loss from each rank's share of it."""
    import torch.distributed as dist

    value = loss.detach().clone()
    dist.all_reduce(value)
    return float(value) / dist.get_world_size()


def sft(
    model,
    tokenizer,
    examples: Sequence[tuple[str, str]],
    config: SFTConfig,
    seed: int = 0,
    progress: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, float]:
    """Fit `model` to the completions of `examples`; returns the mean loss of the last epoch.

    A caller that continues training across rounds passes its own `optimizer` so the
    moments carry over; otherwise a fresh AdamW is made. `shard=(rank, world)` is one
    process of data-parallel training (`training.cluster.ddp`, `model` wrapped in DDP):
    it computes only its slice of every batch (`batch_loss`).
    """
    if not examples:
        return {"loss": float("nan"), "sft_tokens": 0}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_pair(tokenizer, p, c) for p, c in examples]
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    tokens = 0
    lengths = [len(p) + len(c) for p, c in encoded]
    device = next(model.parameters()).device.type
    steps = config.epochs * -(-len(encoded) // config.batch_size)
    bar = tqdm(total=steps, desc="sft", disable=not progress, leave=False)
    for _ in range(config.epochs):
        losses = []
        for indices in epoch_batches(lengths, config.batch_size, config.group_by_length, generator):
            batch = collate([encoded[i] for i in indices], pad_id, config.max_length)
            with config.autocast_context(device):
                loss = batch_loss(model, batch, shard)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item() if shard[1] == 1 else _world_mean(loss))
            tokens += int(batch["attention_mask"].sum())
            bar.update()
    bar.close()
    model.eval()
    return {"loss": sum(losses) / len(losses), "sft_tokens": tokens}


def sft_step(modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, shard: tuple[int, int], *,
             tokenizer, examples: Sequence[tuple[str, str]], config: SFTConfig, seed: int = 0,
             progress: bool = False) -> dict[str, float]:
    """`sft` of `modules["model"]` with `optimizer` as a trainer step (`training.step_runner`),
    which runs it in this process or data-parallel; bind the data with `functools.partial`."""
    return sft(modules["model"], tokenizer, examples, config, seed=seed, progress=progress, optimizer=optimizer,
               shard=shard)
