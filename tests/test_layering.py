"""Every dependency runs one way, in Python and in YAML: tasks/ and policies/ import nothing
of ours, search/ imports tasks/ and policies/, training/ imports everything. A config
group's `_target_`s name only modules its layer may import; the policy group is composed
only by the entry points in training/ (`training.run`, `training.evaluate`), so it may name
training's base-model builder. (`search/run.py` runs `training.evaluate` by
name, without importing it: the documented alias of the old entry point.)"""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OURS = ("tasks", "policies", "search", "training")
MAY_IMPORT = {"tasks": set(), "policies": set(), "search": {"tasks", "policies"}}
GROUP_TARGETS = {"task": {"tasks"}, "search": {"search", "tasks", "policies"}, "policy": {"policies", "training"}}


def imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & set(OURS)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_python_imports_run_one_way(layer):
    wrong = {str(p.relative_to(ROOT)): sorted(imported_packages(p) - MAY_IMPORT[layer] - {layer})
             for p in (ROOT / layer).rglob("*.py")}
    assert {k: v for k, v in wrong.items() if v} == {}


def targets(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "_target_"] + [t for v in node.values() for t in targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in targets(v)]
    return []


@pytest.mark.parametrize("group", sorted(GROUP_TARGETS))
def test_yaml_targets_run_one_way(group):
    wrong = {}
    for path in (ROOT / "conf" / group).rglob("*.yaml"):
        named = {t.split(".")[0] for t in targets(yaml.safe_load(path.read_text(encoding="utf-8")))}
        bad = sorted((named & set(OURS)) - GROUP_TARGETS[group])
        if bad:
            wrong[str(path.relative_to(ROOT))] = bad
    assert wrong == {}


def test_core_algos_takes_tensors_only():
    """training/core_algos.py is the pure-tensor module: its callers read trees and models
    and hand it numbers, so it imports no package of ours."""
    assert imported_packages(ROOT / "training" / "core_algos.py") == set()
