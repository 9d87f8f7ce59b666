"""AlphaZero-style training of the guide: MCTS self-play on a task's training problems,
the task verifier's reward as the game's outcome, and a fit of the network to the search.

Each round plays `games` episodes in lockstep (one batched network call per simulation
across all of them): from a problem's start state, `simulations` PUCT simulations with root
Dirichlet noise, then a move drawn from the root's visit counts (the first
`sample_moves` moves; greedy after), re-rooting on the chosen child. An episode ends at a
terminal state; its outcome z is the verifier's reward on the rendered trace. The network
is then fitted for `epochs` passes over the last two rounds' positions: cross-entropy to
the visit distribution plus squared error of the value to z.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from search.guide.mcts import Cost, GuideSearch
from search.guide.net import PolicyValueNet
from tasks import Problem


@dataclass(frozen=True)
class GuideConfig:
    """The guide's recipe: every field is part of its cache key except `cache_dir`."""

    hidden: int = 128  # width of each hidden layer
    layers: int = 2  # hidden layers
    problems: int = 400  # training problems self-play starts from
    rounds: int = 4  # self-play -> fit rounds
    games: int = 256  # episodes per round
    simulations: int = 32  # MCTS simulations per self-play move
    c_puct: float = 1.5
    dirichlet_alpha: float = 0.3
    dirichlet_eps: float = 0.25
    sample_moves: int = 2  # moves drawn from the visit counts before playing greedily
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1.0e-3
    seed: int = 0
    cache_dir: str | None = None  # null: $PLATEAU_CACHE/guides or ~/.cache/plateau/guides

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "cache_dir"}


Position = tuple[list[float], list[int], list[float], float]  # features, legal, visit shares, outcome


def train_guide(space: Any, problems: list[Problem], config: GuideConfig, progress: bool = False,
                ) -> tuple[PolicyValueNet, dict[str, Any]]:
    """A trained network and what training cost (self-play search and fitting)."""
    if not problems:
        raise ValueError("search.guide.problems: the task has no training problems to self-play on")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = PolicyValueNet(space.feature_size, space.n_actions, config.hidden, config.layers)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    started, cost, history, window = time.perf_counter(), Cost(), [], []
    fit_flops = 0
    for round_ in range(config.rounds):
        net.eval()
        chosen = rng.choice(len(problems), size=config.games, replace=len(problems) < config.games)
        positions, solved = self_play(space, net, [problems[i] for i in chosen], config, rng, cost)
        window = window[-1:] + [positions]
        net.train()
        data = [p for chunk in window for p in chunk]
        loss = fit(net, optimizer, data, config, rng)
        fit_flops += 3 * net.flops_per_state * len(data) * config.epochs  # forward + backward ~ 3 forwards
        history.append({"round": round_, "solve_rate": solved, "positions": len(positions), "loss": loss})
        if progress:
            print(f"guide round {round_}: self-play solve rate {solved:.3f}, loss {loss:.4f}", flush=True)
    net.eval()
    stats = {**cost.as_dict(), "fit_flops": fit_flops, "wall_s": round(time.perf_counter() - started, 2),
             "parameters": sum(p.numel() for p in net.parameters()), "rounds": history}
    return net, stats


def self_play(space: Any, net: PolicyValueNet, problems: list[Problem], config: GuideConfig,
              rng: np.random.Generator, cost: Cost) -> tuple[list[Position], float]:
    """Play one episode per problem in lockstep; returns the positions and the solve rate."""
    search = GuideSearch(space, net, config.c_puct, config.dirichlet_alpha, config.dirichlet_eps, rng)
    roots = [search.node(space.initial(p)) for p in problems]
    records: list[list[tuple[list[float], list[int], list[float]]]] = [[] for _ in problems]
    costs = [Cost() for _ in problems]
    move = 0
    while live := [i for i, r in enumerate(roots) if not r.terminal]:
        search.run([roots[i] for i in live], config.simulations, [costs[i] for i in live])
        for i in live:
            root = roots[i]
            shares = root.visits / root.visits.sum()
            records[i].append((space.encode(root.state), list(root.actions), shares.tolist()))
            k = int(rng.choice(len(shares), p=shares)) if move < config.sample_moves else int(np.argmax(shares))
            roots[i] = root.children[root.actions[k]]
        move += 1
    for c in costs:
        cost.add(c)
    positions = [(x, legal, pi, roots[i].reward) for i, game in enumerate(records) for x, legal, pi in game]
    return positions, float(np.mean([r.reward for r in roots]))


def fit(net: PolicyValueNet, optimizer: torch.optim.Optimizer, data: list[Position], config: GuideConfig,
        rng: np.random.Generator) -> float:
    """`epochs` passes of minibatch Adam; returns the last epoch's mean loss."""
    x = torch.tensor([d[0] for d in data], dtype=torch.float32)
    mask = torch.zeros(len(data), net.policy.out_features, dtype=torch.bool)
    target = torch.zeros(len(data), net.policy.out_features)
    for row, (_, legal, pi, _) in enumerate(data):
        mask[row, legal] = True
        target[row, legal] = torch.tensor(pi, dtype=torch.float32)
    z = torch.tensor([d[3] for d in data], dtype=torch.float32)
    losses: list[float] = []
    for _ in range(config.epochs):
        losses = []
        order = torch.from_numpy(rng.permutation(len(data)))
        for start in range(0, len(data), config.batch_size):
            idx = order[start : start + config.batch_size]
            logp, value = net(x[idx], mask[idx])
            policy_loss = -(target[idx] * logp.clamp_min(-1e4)).sum(-1).mean()
            loss = policy_loss + torch.nn.functional.mse_loss(value, z[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return float(np.mean(losses)) if losses else 0.0
