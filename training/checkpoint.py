"""Checkpoints of the iteration loop: writing them atomically, and resuming from the newest
one that loads.

    checkpoints/iter_NNN/   config.json, model.safetensors (or shards), tokenizer files
                            trainer_state.pt   {"iteration", "metrics", "trainer", "rng"}
                            COMPLETE           written last: a folder without it is ignored

`trainer_state.pt` holds only tensors and plain Python data (the trainer's `state_dict`,
the metrics rows, every RNG state) and is read with `torch.load(weights_only=True)`, so
opening someone else's run folder never runs pickled code.

Resume walks back from the newest complete checkpoint to the first whose weights and
trainer state read cleanly, printing one line for each one it skips. When none loads
(or there is none), the run starts from iteration 0, saying so: the base policy is the
oldest checkpoint there is, and redoing iterations loses nothing a broken file still held.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from policies import Policy
from search.console import say
from search.run_folder import RunFolder, finite
from training.trainer import Trainer

COMPLETE = "COMPLETE"
STATE = "trainer_state.pt"
INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from; the message says which file and why."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain data (NumPy's key as a list)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "numpy": [name, key.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: RunFolder, iteration: int, policy: Policy, trainer: Trainer,
                    rows: list[dict[str, Any]]) -> None:
    """Write checkpoints/iter_NNN atomically: into a temporary folder, marked COMPLETE, renamed."""
    final = folder.checkpoint_dir(iteration)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save(tmp)
    torch.save({"iteration": iteration, "metrics": finite(rows), "trainer": trainer.state_dict(), "rng": rng_state()},
               tmp / STATE)
    (tmp / COMPLETE).write_text("")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def complete_checkpoints(folder: RunFolder) -> list[Path]:
    """Checkpoint folders marked COMPLETE, newest first."""
    found = (folder.root / "checkpoints").glob("iter_[0-9][0-9][0-9]")
    return sorted((p for p in found if (p / COMPLETE).exists()), reverse=True)


def _check_weights(ckpt: Path) -> None:
    """Raise CheckpointError unless the HF folder's config and every weight file read cleanly
    (safetensors checks that each file covers its header: a truncated file fails here)."""
    try:
        json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"config.json is missing or not JSON ({type(e).__name__})") from None
    if (ckpt / INDEX).exists():
        try:
            names = sorted(set(json.loads((ckpt / INDEX).read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{INDEX} is unreadable ({type(e).__name__})") from None
    else:
        names = ["model.safetensors"]
    for name in names:
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{name} is missing (no model weights)")
        try:
            with safe_open(ckpt / name, framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{name} is truncated or corrupt ({e})") from None


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """The trainer state of `ckpt` after checking its weights; CheckpointError when either
    does not load. Nothing is changed: the policy and trainer are touched only after this."""
    _check_weights(ckpt)
    if not (ckpt / STATE).is_file():
        raise CheckpointError(f"{STATE} is missing")
    try:
        state = torch.load(ckpt / STATE, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises pickle, zip and runtime errors alike
        if "Unsupported global" in str(e):  # a class or function to call: what weights_only refuses
            raise CheckpointError(f"{STATE} holds objects other than tensors and plain data "
                                  "(refused: unpickling them could run code)") from None
        raise CheckpointError(f"{STATE} is not a readable torch file ({type(e).__name__}: truncated or corrupt)") from None
    if not isinstance(state, dict) or not {"iteration", "metrics", "trainer", "rng"} <= state.keys():
        raise CheckpointError(f"{STATE} lacks iteration, metrics, trainer or rng")
    return state


def resume(folder: RunFolder, policy: Policy, trainer: Trainer) -> tuple[int, list[dict[str, Any]]]:
    """Restore the newest checkpoint that loads; returns its iteration and the metrics rows
    up to it, or (0, []) to start from the beginning."""
    found = complete_checkpoints(folder)
    for ckpt in found:
        try:
            state = read_checkpoint(ckpt)
        except CheckpointError as e:
            say(f"resume: skipping {ckpt}: {e}")
            continue
        policy.update_weights(ckpt)
        trainer.load_state_dict(state["trainer"])
        set_rng_state(state["rng"])
        say(f"resume: continuing from {ckpt} (iteration {state['iteration']})")
        return state["iteration"], state["metrics"]
    where = folder.root / "checkpoints"
    why = f"no checkpoint in {where} loads" if found else f"no complete checkpoint in {where}"
    say(f"resume: {why}; starting from iteration 0")
    return 0, []
