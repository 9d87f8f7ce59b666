"""AlphaZero-style MCTS over a formal state space, guided by the policy-value network.

Many trees search in lockstep: each simulation descends every tree by PUCT to one leaf,
the non-terminal leaves of all trees are scored in ONE batched network call, and the
values are backed up. A terminal leaf's value is the task verifier's reward on the
rendered trace (`space.reward`), so the guide learns and searches against the same judge
as the language model. Self-play (`search.guide.train`) and XoT's hints (`search.xot`)
both run this search; `Cost` counts what it spent (simulations, states the network
scored, and the network's FLOPs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.guide.net import PolicyValueNet


@dataclass
class Cost:
    simulations: int = 0
    states: int = 0  # states the network scored
    flops: int = 0  # network FLOPs spent on them

    def add(self, other: Cost) -> None:
        self.simulations += other.simulations
        self.states += other.states
        self.flops += other.flops

    def as_dict(self) -> dict[str, int]:
        return {"simulations": self.simulations, "network_states": self.states, "network_flops": self.flops}


@dataclass(eq=False)
class Node:
    """A state in the guide's tree; edge statistics live on the parent, per legal action."""

    state: Any
    terminal: bool
    reward: float = 0.0  # the verifier's, on terminal nodes
    actions: list[int] = field(default_factory=list)
    priors: np.ndarray | None = None  # None until the network has scored the node
    value: float = 0.0  # the network's value of the node
    visits: np.ndarray | None = None
    value_sum: np.ndarray | None = None
    children: dict[int, Node] = field(default_factory=dict)

    @property
    def expanded(self) -> bool:
        return self.priors is not None

    def expand(self, actions: list[int], priors: list[float], value: float) -> None:
        self.actions, self.value = actions, value
        p = np.asarray(priors, dtype=float)
        self.priors = p / p.sum() if p.sum() > 0 else np.full(len(actions), 1.0 / max(1, len(actions)))
        self.visits, self.value_sum = np.zeros(len(actions)), np.zeros(len(actions))


class GuideSearch:
    """PUCT search; `dirichlet_eps > 0` mixes root noise in (self-play exploration)."""

    def __init__(self, space: Any, net: PolicyValueNet, c_puct: float = 1.5, dirichlet_alpha: float = 0.3,
                 dirichlet_eps: float = 0.0, rng: np.random.Generator | None = None):
        self.space, self.net, self.c = space, net, c_puct
        self.alpha, self.eps = dirichlet_alpha, dirichlet_eps
        self.rng = rng or np.random.default_rng(0)

    def node(self, state: Any) -> Node:
        terminal = self.space.is_terminal(state)
        return Node(state, terminal, self.space.reward(state) if terminal else 0.0)

    def run(self, roots: list[Node], simulations: int, costs: list[Cost],
            exclude: list[set[int]] | None = None) -> None:
        """`simulations` more simulations in every tree; `exclude[i]` are action ids tree i's
        root may not take (a revision searching around a step judged wrong)."""
        fresh = [i for i, r in enumerate(roots) if not r.terminal and not r.expanded]
        self._evaluate([roots[i] for i in fresh], [costs[i] for i in fresh])
        for root, banned in zip(roots, exclude or [set()] * len(roots)):
            if banned and root.expanded:
                keep = [k for k, a in enumerate(root.actions) if a not in banned]
                root.expand([root.actions[k] for k in keep], list(root.priors[keep]), root.value)
                root.children = {a: c for a, c in root.children.items() if a not in banned}
            if self.eps > 0 and root.expanded and len(root.actions) > 1:
                noise = self.rng.dirichlet([self.alpha] * len(root.actions))
                root.priors = (1 - self.eps) * root.priors + self.eps * noise
        live = [i for i, r in enumerate(roots) if r.expanded and r.actions]
        for _ in range(simulations):
            paths = [self._select(roots[i]) for i in live]
            leaves = [(i, p[-1][0]) for i, p in zip(live, paths) if not p[-1][0].terminal]
            self._evaluate([leaf for _, leaf in leaves], [costs[i] for i, _ in leaves])
            for i, path in zip(live, paths):
                costs[i].simulations += 1
                leaf = path[-1][0]
                self._backup(path, leaf.reward if leaf.terminal else leaf.value)

    def _select(self, root: Node) -> list[tuple[Node, int | None]]:
        """(node, action taken from it) from the root down to a leaf (action None)."""
        path, node = [], root
        while node.expanded and not node.terminal and node.actions:
            n = node.visits
            q = np.divide(node.value_sum, n, out=np.zeros_like(n), where=n > 0)
            k = int(np.argmax(q + self.c * node.priors * math.sqrt(n.sum() + 1) / (1 + n)))
            a = node.actions[k]
            if a not in node.children:
                node.children[a] = self.node(self.space.apply(node.state, a))
            path.append((node, k))
            node = node.children[a]
        path.append((node, None))
        return path

    def _evaluate(self, nodes: list[Node], costs: list[Cost]) -> None:
        if not nodes:
            return
        legal = [self.space.actions(n.state) for n in nodes]
        priors, values = self.net.predict([self.space.encode(n.state) for n in nodes], legal)
        for node, actions, p, v, cost in zip(nodes, legal, priors, values, costs):
            node.expand(actions, p, v)
            cost.states += 1
            cost.flops += self.net.flops_per_state

    @staticmethod
    def _backup(path: list[tuple[Node, int | None]], value: float) -> None:
        for node, k in path[:-1]:
            node.visits[k] += 1
            node.value_sum[k] += value

    # ---- reading trajectories off a searched tree --------------------------------------

    def trajectories(self, root: Node, m: int, cost: Cost) -> list[list[int]]:
        """Up to `m` distinct action sequences from `root` to a terminal state: the terminal
        nodes the search reached, solved ones first, then by visits of their last edge; if
        fewer than `m` were reached, the greedy path (most visited, then highest prior) is
        completed with the network."""
        found: list[tuple[float, float, int, list[int]]] = []
        stack: list[tuple[Node, list[int], float]] = [(root, [], 0.0)]
        while stack:
            node, actions, visits = stack.pop()
            if node.terminal and actions:
                found.append((-node.reward, -visits, len(found), actions))
            for k, a in enumerate(node.actions):
                if a in node.children:
                    stack.append((node.children[a], actions + [a], float(node.visits[k])))
        paths = [actions for *_, actions in sorted(found)[:m]]
        if len(paths) < m:
            greedy = self.greedy(root, cost)
            if greedy and greedy not in paths:
                paths.append(greedy)
        return paths

    def greedy(self, root: Node, cost: Cost) -> list[int]:
        node, actions = root, []
        while not node.terminal:
            if not node.expanded:
                self._evaluate([node], [cost])
            if not node.actions:
                break
            k = int(np.lexsort((-node.priors, -node.visits))[0])
            a = node.actions[k]
            if a not in node.children:
                node.children[a] = self.node(self.space.apply(node.state, a))
            actions.append(a)
            node = node.children[a]
        return actions
