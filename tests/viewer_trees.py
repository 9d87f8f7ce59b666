"""Hand-made search trees shared by the viewer tests (built with `SearchTree` itself)."""

from __future__ import annotations

from pathlib import Path

from search.tree import SearchTree

INJECTION = "</script><script>window.__pwned = 1</script>"


def small_tree(problem_id: str = "cd_small", strategy: str = "mcts") -> SearchTree:
    """Three levels below the root; one correct terminal (node 2), two wrong ones.

    0 prompt
    ├─ 1 "3*5 = 15"                      value 0.6
    │  ├─ 2 "15+7 = 22. Answer: 22"      terminal, reward 1
    │  └─ 3 "15-7 = 8"                   value 0.2
    │     └─ 4 "8*7 = 56. Answer: fifty-six"  terminal, reward 0 (depth 3)
    ├─ 5 "7-3 = 4"                       value 0.3
    │  └─ 6 "4*5 = 20. Answer: 20"       terminal, reward 0
    └─ 7 INJECTION (a step that tries to close the page's script element)
    """
    t = SearchTree(problem_id, "Use 3 5 7 to make 22.\n", strategy, meta={"target": 22})
    n1 = t.add_child(0, "3*5 = 15\n", value=0.6, visits=5, prior=0.5, tokens=7, logprobs=[-0.1, -0.3])
    t.add_child(n1, "15+7 = 22. Answer: 22\n", value=1.0, visits=3, prior=0.7, tokens=9,
                terminal=True, reward=1.0, answer="22", finish_reason="stop")
    n3 = t.add_child(n1, "15-7 = 8\n", value=0.2, visits=2, prior=0.3, tokens=6)
    t.add_child(n3, "8*7 = 56. Answer: fifty-six\n", value=0.0, visits=1, prior=0.9, tokens=10,
                terminal=True, reward=0.0, answer="56", finish_reason="stop")
    n5 = t.add_child(0, "7-3 = 4\n", value=0.3, visits=2, prior=0.4, tokens=6)
    t.add_child(n5, "4*5 = 20. Answer: 20\n", value=0.0, visits=1, prior=0.6, tokens=9,
                terminal=True, reward=0.0, answer="20", finish_reason="stop")
    t.add_child(0, INJECTION, value=float("nan"), visits=0, tokens=12)
    return t


def big_tree(problem_id: str = "cd_big") -> SearchTree:
    """10 201 nodes: 300 children under the root (more than one page of 200), 33 under each,
    every third grandchild a terminal, one in seven of those correct."""
    t = SearchTree(problem_id, "Use 1 2 3 4 to make 10.\n", "sampling")
    for i in range(300):
        mid = t.add_child(0, f"branch {i}\n", value=i / 300, visits=33, tokens=4)
        for j in range(33):
            terminal = j % 3 == 0
            t.add_child(mid, f"leaf {i}.{j}\n", value=j / 33, visits=1, tokens=5, terminal=terminal,
                        reward=float((i + j) % 7 == 0) if terminal else None)
    return t


def write_run(root: Path, trees: dict[str, SearchTree]) -> Path:
    """A run folder holding `trees/<label>.json` for each label (labels may nest folders)."""
    for label, tree in trees.items():
        path = root / "trees" / f"{label}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tree.dumps(), encoding="utf-8")
    return root
