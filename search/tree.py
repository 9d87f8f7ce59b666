"""`SearchTree`: the record of one problem's search, on a `networkx.DiGraph`.

Node 0 is the root (the prompt, no step text). Every other node is one generated step;
its trace prefix is the concatenation of the steps on the path from the root. Strategies
grow the tree, the verifier labels terminal nodes, trainers read `traces()`, and the
viewer reads the JSON form.

JSON form (`to_json`, schema version 1)::

    {"schema": 1,
     "problem_id": str, "prompt": str, "strategy": str, "meta": {...},
     "nodes": [{"id": int, "parent": int | null, "text": str, "depth": int,
                "visits": int, "value": float | null, "score": float | null, "reward": float | null,
                "terminal": bool, "answer": str | null, "prior": float | null,
                "logprobs": [float, ...], "token_ids": [int, ...], "tokens": int, "iteration": int,
                "finish_reason": str | null, "off_context": bool}, ...]}

`value` is the strategy's estimate (mean backed-up value for MCTS, evaluator score for
ToT); `score` is the node evaluator's own judgement when the node was scored (what the
`value_auc` health figure rates); `reward` is the verifier's, set only on terminal nodes; `token_ids` and `logprobs` are the
sampled tokens of the step and their log-probabilities when sampled (so trainers never
re-tokenise text); `tokens` is the number of tokens generated to create the node's step; `iteration` is the search round that created it.
`off_context` is true when the step's tokens were sampled under a context other than its
tree prefix (an evolution rewrite prompt, a crossover splice from another trace) or not
sampled by the policy at all (an XoT guide's step: text only, no ids): its `logprobs` are not
log pi(token | prompt + prefix), so trainers keep it as context only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

SCHEMA_VERSION = 1

NODE_DEFAULTS: dict[str, Any] = {
    "text": "",
    "depth": 0,
    "visits": 0,
    "value": None,
    "score": None,
    "reward": None,
    "terminal": False,
    "answer": None,
    "prior": None,
    "logprobs": [],
    "token_ids": [],
    "tokens": 0,
    "iteration": 0,
    "finish_reason": None,
    "off_context": False,
}


@dataclass
class Trace:
    """One root-to-terminal path: a complete (or budget-cut) reasoning trace."""

    problem_id: str
    prompt: str
    steps: list[str]
    reward: float
    answer: str | None
    tokens: int
    node_ids: list[int]
    node_values: list[float | None]
    step_logprobs: list[list[float]]
    step_token_ids: list[list[int]]
    finish_reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.steps)


class SearchTree:
    """A search tree over reasoning steps for one problem."""

    root = 0

    def __init__(self, problem_id: str, prompt: str, strategy: str = "", meta: dict | None = None):
        self.graph = nx.DiGraph(problem_id=problem_id, prompt=prompt, strategy=strategy, meta=dict(meta or {}))
        self.graph.add_node(self.root, **NODE_DEFAULTS)

    @property
    def problem_id(self) -> str:
        return self.graph.graph["problem_id"]

    @property
    def prompt(self) -> str:
        return self.graph.graph["prompt"]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __getitem__(self, node: int) -> dict[str, Any]:
        return self.graph.nodes[node]

    def add_child(self, parent: int, text: str, **attrs: Any) -> int:
        """Add a step under `parent`; unknown attribute names are an error."""
        unknown = set(attrs) - set(NODE_DEFAULTS)
        if unknown:
            raise KeyError(f"unknown node attributes {sorted(unknown)}")
        node = self.graph.number_of_nodes()
        data = {**NODE_DEFAULTS, **attrs, "text": text, "depth": self[parent]["depth"] + 1}
        for key in ("logprobs", "token_ids"):
            data[key] = list(data[key])
        self.graph.add_node(node, **data)
        self.graph.add_edge(parent, node)
        return node

    def parent(self, node: int) -> int | None:
        preds = list(self.graph.predecessors(node))
        return preds[0] if preds else None

    def children(self, node: int) -> list[int]:
        return list(self.graph.successors(node))

    def path(self, node: int) -> list[int]:
        """Node ids from the root to `node`, both included."""
        path = [node]
        while (p := self.parent(path[-1])) is not None:
            path.append(p)
        return path[::-1]

    def prefix(self, node: int) -> str:
        """The trace text up to and including `node`'s step (the prompt excluded)."""
        return "".join(self[n]["text"] for n in self.path(node)[1:])

    def terminals(self) -> list[int]:
        return [n for n, d in self.graph.nodes(data=True) if d["terminal"]]

    @property
    def tokens(self) -> int:
        """Tokens generated to build the whole tree."""
        return sum(d["tokens"] for _, d in self.graph.nodes(data=True))

    def traces(self) -> list[Trace]:
        """Every terminal path as a `Trace`, in node order."""
        out = []
        for leaf in self.terminals():
            path = self.path(leaf)[1:]
            nodes = [self[n] for n in path]
            out.append(
                Trace(
                    problem_id=self.problem_id,
                    prompt=self.prompt,
                    steps=[d["text"] for d in nodes],
                    reward=float(self[leaf]["reward"] or 0.0),
                    answer=self[leaf]["answer"],
                    tokens=sum(d["tokens"] for d in nodes),
                    node_ids=path,
                    node_values=[d["value"] for d in nodes],
                    step_logprobs=[list(d["logprobs"]) for d in nodes],
                    step_token_ids=[list(d["token_ids"]) for d in nodes],
                    finish_reason=self[leaf]["finish_reason"],
                    meta={"strategy": self.graph.graph["strategy"]},
                )
            )
        return out

    def to_json(self) -> dict[str, Any]:
        g = self.graph.graph
        nodes = [{"id": n, "parent": self.parent(n), **d} for n, d in self.graph.nodes(data=True)]
        return {"schema": SCHEMA_VERSION, "problem_id": g["problem_id"], "prompt": g["prompt"],
                "strategy": g["strategy"], "meta": g["meta"], "nodes": nodes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchTree:
        """Rebuild a tree from `to_json` output; a malformed document raises ValueError
        naming the offending field."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"tree JSON: schema {data.get('schema')!r} is not {SCHEMA_VERSION}")
        try:
            tree = cls(data["problem_id"], data["prompt"], data.get("strategy", ""), data.get("meta"))
            nodes = sorted(data["nodes"], key=lambda d: d["id"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"tree JSON: missing or malformed field {e}") from None
        for i, d in enumerate(nodes):
            if d.get("id") != i:
                raise ValueError(f"tree JSON: node ids must be 0..{len(nodes) - 1}, found {d.get('id')!r}")
            attrs = {k: d.get(k, v) for k, v in NODE_DEFAULTS.items()}
            if i == 0:
                tree.graph.nodes[0].update(attrs)
            else:
                parent = d.get("parent")
                if not isinstance(parent, int) or not 0 <= parent < i:
                    raise ValueError(f"tree JSON: node {i} has invalid parent {parent!r}")
                tree.graph.add_node(i, **attrs)
                tree.graph.add_edge(parent, i)
        return tree

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> SearchTree:
        return cls.from_json(json.loads(text))

    def to_dot(self) -> str:
        """Graphviz DOT text: terminal nodes green when rewarded, red when not."""
        lines = ["digraph search {", "  node [shape=box, fontname=monospace];"]
        for n, d in self.graph.nodes(data=True):
            label = (d["text"] or self.prompt[-40:]).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\l")
            stats = f"v={d['value']:.2f} " if isinstance(d["value"], (int, float)) else ""
            color = ""
            if d["terminal"]:
                color = ', style=filled, fillcolor="' + ("palegreen" if (d["reward"] or 0) > 0 else "mistyrose") + '"'
            lines.append(f'  {n} [label="{label}\\l{stats}N={d["visits"]}\\l"{color}];')
        lines += [f"  {u} -> {v};" for u, v in self.graph.edges]
        lines.append("}")
        return "\n".join(lines)
