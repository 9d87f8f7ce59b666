"""EPTree (TreeRL, Hou et al. 2025): entropy-guided tree rollouts.

Round 0 samples `m` whole chains per problem. Each later round picks, over every token of
the problem's tree, the `forks` positions where the policy was least sure of what it
sampled, splits the node holding each position there (the head keeps the tokens before
it, the rest of the node and its children hang under the head unchanged) and samples
`branch` new whole continuations from the head, so the tree grows from the uncertain
points rather than from step delimiters; `rounds` such rounds, all inside the token budget.
Every round is one batched `search.expand` call over all problems, and a fork's prompt is
its head's prefix, which the engine's prefix cache shares with the chain it came from.

Uncertainty is -log p of the sampled token (the `Policy.sample` contract gives the
sampled token's log-probability, not the per-position entropy TreeRL uses; the two rank
positions alike in expectation, since the entropy is the mean of -log p). A position is a
fork point only when the node's text splits there into text that re-encodes to the
token ids on either side, so the trainers can score the forked traces exactly. TreeRL
excludes nothing else; neither does this. Node ids are renumbered breadth-first at the
end, so every parent's id is below its children's (the tree JSON schema's rule).
"""

from __future__ import annotations

import time
from collections import deque

from policies import Policy
from search.budget import Budget, require_budget
from search.expand import Expansion, ProblemState, Sampler, expand, finish, majority_vote, start, step_prior
from search.progress import SearchBar
from search.result import SearchResult
from search.tree import SearchTree
from tasks import Problem, Task


def can_split(policy: Policy, text: str, ids: list[int], t: int) -> str | None:
    """The text of `ids[:t]` when `text` starts with it and it re-encodes to those ids, else
    None. (The rest then ends where the node did, a boundary the node already passed.)"""
    head = policy.tokenizer.decode(ids[:t], skip_special_tokens=True)
    ok = text.startswith(head) and list(policy.encode_continuation(head)) == list(ids[:t])
    return head if ok else None


def split(tree: SearchTree, node: int, t: int, head_text: str) -> int:
    """Insert a head node holding the first `t` tokens of `node` between it and its parent;
    `node` keeps the rest (and its children, terminal label and reward). Returns the head."""
    d, parent = tree[node], tree.parent(node)
    head = tree.add_child(parent, head_text, logprobs=d["logprobs"][:t], token_ids=d["token_ids"][:t], tokens=t,
                          prior=step_prior(d["logprobs"][:t]), iteration=d["iteration"])
    tree.graph.remove_edge(parent, node)
    tree.graph.add_edge(head, node)
    d.update(text=d["text"][len(head_text):], logprobs=d["logprobs"][t:], token_ids=d["token_ids"][t:],
             tokens=d["tokens"] - t, prior=step_prior(d["logprobs"][t:]))
    return head


def fork(state: ProblemState, policy: Policy, forks: int) -> list[int]:
    """Split the tree at its `forks` most uncertain splittable positions; the heads to grow."""
    tree = state.tree
    ranked = sorted(((-lp, node, t) for node in tree.graph.nodes if node != tree.root and not tree[node]["off_context"]
                     for t, lp in enumerate(tree[node]["logprobs"]) if t > 0), key=lambda c: (-c[0], c[1], c[2]))
    chosen: dict[int, list[tuple[int, str]]] = {}
    picked = 0
    for _, node, t in ranked:
        if picked == forks:
            break
        head = can_split(policy, tree[node]["text"], tree[node]["token_ids"], t)
        if head is not None:
            chosen.setdefault(node, []).append((t, head))
            picked += 1
    heads = []
    for node, points in chosen.items():
        current = node
        for t, head_text in sorted(points, reverse=True):  # later positions first: earlier ones lie in the head
            current = split(tree, current, t, head_text)
            heads.append(current)
    return heads


def renumbered(tree: SearchTree) -> SearchTree:
    """The same tree with breadth-first ids (parents before children) and depths recomputed."""
    out = SearchTree(tree.problem_id, tree.prompt, tree.graph.graph["strategy"], tree.graph.graph["meta"])
    ids, queue = {tree.root: out.root}, deque([tree.root])
    while queue:
        node = queue.popleft()
        for child in tree.children(node):
            attrs = {k: v for k, v in tree[child].items() if k not in ("text", "depth")}
            ids[child] = out.add_child(ids[node], tree[child]["text"], **attrs)
            queue.append(child)
    return out


class EntropyTree:
    name = "entropy_tree"

    def __init__(self, m: int = 4, forks: int = 2, branch: int = 2, rounds: int | None = 2, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0, progress: bool = False):
        for key, value in (("m", m), ("forks", forks), ("branch", branch)):
            if value < 1:
                raise ValueError(f"search.{key} must be >= 1, got {value}")
        if rounds is not None and rounds < 0:
            raise ValueError(f"search.rounds must be >= 0, got {rounds}")
        self.m, self.forks, self.branch, self.rounds = m, forks, branch, rounds
        self.seed, self.progress = seed, progress
        self.sampler = Sampler(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, max_depth=1)

    def search(self, problems: list[Problem], policy: Policy, task: Task, budget: Budget) -> list[SearchResult]:
        if getattr(policy, "tokenizer", None) is None:
            raise ValueError("search=entropy_tree splits sampled tokens, so the policy needs a tokenizer")
        if self.rounds is None:
            require_budget(budget, "rounds")
        started = time.perf_counter()
        states = start(problems, task, budget, self.name)
        bar = SearchBar(len(states), self.name, self.progress)
        requests = [Expansion(s, s.tree.root, self.m) for s in states]
        done = 0
        while requests:
            expand(requests, policy, task, self.sampler, seed=self.seed * 100_003 + done, iteration=done, step=False)
            done += 1
            bar.show(sum(s.done for s in states), sum(s.meter.tokens for s in states))
            requests = [] if self.rounds is not None and done > self.rounds else self.fork_requests(states, policy)
        bar.close()
        for s in states:
            s.tree = renumbered(s.tree)
            s.tree.graph.graph["meta"]["rounds"] = done
        answers = [majority_vote([s.tree[n]["answer"] for n in s.tree.terminals()]) for s in states]
        return finish(states, answers, started)

    def fork_requests(self, states: list[ProblemState], policy: Policy) -> list[Expansion]:
        out = []
        for s in states:
            if s.done or s.meter.exhausted:
                continue
            heads = fork(s, policy, self.forks)
            if not heads:
                s.stop_reason = "exhausted"
            out += [Expansion(s, h, self.branch) for h in heads]
        return out
