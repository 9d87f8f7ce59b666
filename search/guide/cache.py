"""Train a guide once per recipe and reuse it: the cache of trained guide networks.

The key is a hash of everything training depends on: the state space's rules
(`space.spec()`), the exact training problems (numbers and targets), and the
`GuideConfig` recipe. A cached guide is a folder `guides/<space>-<digest>/` under
the cache root (`policies.cache`: $PLATEAU_CACHE, default ~/.cache/plateau) with
`guide.safetensors` (weights; no pickle) and `guide.json` (the recipe and what training
cost), published like every cached folder (`policies.cache.publish_folder`: built under a
temporary name and renamed, so a killed run never leaves a guide a later run would trust).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from policies.cache import cache_root, publish_folder

from search.guide.net import PolicyValueNet
from search.guide.train import GuideConfig, train_guide
from tasks import Problem

RECIPE_VERSION = 1  # bump when self-play or the network changes, so stale guides are not reused


def default_cache_dir() -> Path:
    return cache_root() / "guides"


def guide_recipe(space: Any, problems: list[Problem], config: GuideConfig) -> dict[str, Any]:
    rows = json.dumps([[list(map(str, p.meta["numbers"])), str(p.meta["target"])] for p in problems])
    return {"version": RECIPE_VERSION, "space": space.spec(), "config": config.recipe(),
            "features": space.feature_size, "actions": space.n_actions,
            "problems": {"count": len(problems), "sha256": hashlib.sha256(rows.encode()).hexdigest()}}


def load_or_train(space: Any, problems: list[Problem], config: GuideConfig, progress: bool = False,
                  ) -> tuple[PolicyValueNet, dict[str, Any]]:
    """The guide for this recipe and its `guide.json` record (with `cached`: whether it was
    loaded rather than trained by this call, and `folder`)."""
    recipe = guide_recipe(space, problems, config)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    folder = root / f"{recipe['space']['space']}-{digest}"
    net = PolicyValueNet(space.feature_size, space.n_actions, config.hidden, config.layers)
    cached = (folder / "guide.json").exists()
    if not cached:
        if progress:
            print(f"training the guide ({config.rounds} self-play rounds) into {folder}", flush=True)
        trained, stats = train_guide(space, problems, config, progress)
        _write(folder, trained, {**recipe, "training": stats})
    net.load_state_dict(load_file(folder / "guide.safetensors"))
    net.eval()
    record = json.loads((folder / "guide.json").read_text(encoding="utf-8"))
    return net, {**record, "cached": cached, "folder": str(folder)}


def _write(folder: Path, net: PolicyValueNet, record: dict[str, Any]) -> None:
    def build(tmp: Path) -> None:
        save_file(net.state_dict(), tmp / "guide.safetensors")
        (tmp / "guide.json").write_text(json.dumps(record, indent=2), encoding="utf-8")

    publish_folder(folder, build, finished=lambda f: (f / "guide.json").exists())
