"""Evolutionary search over complete traces, with the tree as the lineage record.

A population of finished traces per problem evolves until the budget is spent: mutation
resamples a trace's suffix from a chosen step (or rewrites one step through a mutation
prompt and resamples after it), crossover splices two traces where they pass through the
same step text, and selection keeps the fittest (reward, optional dense step reward, and
a novelty bonus), or, as MAP-Elites, the best trace of every niche of a task descriptor.
Mutated suffixes grow as children of the node they branch from; growing offspring of all
problems advance one step per round in one batched call.
"""

from __future__ import annotations

import numpy as np

from policies import Policy
from search.budget import require_budget
from search.expand import Expansion, ProblemState, label_terminal
from search.stepwise import StepwiseSearch
from tasks import Task

REWRITE_PROMPT = "{prompt}{prefix}Rewrite this step so that it is correct: {step}\n"


def step_key(text: str) -> str:
    return " ".join(text.split())


class Evolution(StepwiseSearch):
    name = "evolution"

    def __init__(self, population: int = 8, offspring: int = 8, crossover_rate: float = 0.3,
                 rewrite_rate: float = 0.0, rewrite_prompt: str = REWRITE_PROMPT, dense_weight: float = 0.0,
                 novelty_weight: float = 0.0, novelty_k: int = 3, map_elites: bool = False,
                 max_generations: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.population, self.offspring = population, offspring
        self.crossover_rate, self.rewrite_rate, self.rewrite_prompt = crossover_rate, rewrite_rate, rewrite_prompt
        self.dense_weight, self.novelty_weight, self.novelty_k = dense_weight, novelty_weight, novelty_k
        self.map_elites, self.max_generations = map_elites, max_generations

    def run(self, states: list[ProblemState], policy: Policy, task: Task) -> None:
        if self.max_generations is None and states:
            require_budget(states[0].meter.budget, "max_generations")
        for s in states:
            s.scratch.update(pop=[], born=[], growing=[(s.tree.root, self.population, None)], gen=0,
                             archive={}, log_generations=[])
        while live := self.live(states, lambda s: bool(s.scratch["growing"])):
            requests = [Expansion(s, node, n, prompt) for s in live for node, n, prompt in s.scratch["growing"]]
            children = self.grow(requests, policy, task)
            for s in live:
                s.scratch["growing"] = []
            for e, kids in zip(requests, children):
                for c in kids:
                    if e.state.tree[c]["terminal"]:
                        e.state.scratch["born"].append(c)
                    else:
                        e.state.scratch["growing"].append((c, 1, None))
            for s in live:
                if not s.scratch["growing"] and not s.done:
                    self.next_generation(s, task)
        for s in states:
            if s.scratch["born"]:
                self.select(s, task)

    # -- fitness -------------------------------------------------------------------------

    def objective(self, state: ProblemState, node: int, task: Task) -> float:
        """Reward of the finished trace plus the weighted mean dense step reward."""
        tree = state.tree
        value = float(tree[node]["reward"] or 0.0)
        if self.dense_weight:
            path = tree.path(node)[1:]
            dense = [task.step_reward(state.problem, tree.prefix(tree.parent(n)), tree[n]["text"]) for n in path]
            dense = [d for d in dense if d is not None]
            value += self.dense_weight * (sum(dense) / len(dense) if dense else 0.0)
        return value

    def novelty(self, state: ProblemState, pool: list[int]) -> dict[int, float]:
        """Mean Jaccard distance of each trace's step set to its `novelty_k` nearest others."""
        sets = {n: {step_key(state.tree[m]["text"]) for m in state.tree.path(n)[1:]} for n in pool}
        out = {}
        for n in pool:
            d = sorted(1 - len(sets[n] & sets[m]) / max(1, len(sets[n] | sets[m])) for m in pool if m != n)
            out[n] = float(np.mean(d[: self.novelty_k])) if d else 0.0
        return out

    # -- selection and variation ---------------------------------------------------------

    def niche(self, state: ProblemState, node: int, task: Task) -> str:
        descriptor = task.descriptor(state.problem, state.tree.prefix(node))
        return str(state.tree[node]["answer"] if descriptor is None else descriptor)

    def select(self, state: ProblemState, task: Task) -> None:
        """Merge the newborn into the population; log the generation's fitness."""
        sc, tree = state.scratch, state.tree
        for n in sc["born"]:
            tree[n]["value"] = self.objective(state, n, task)
        pool = list(dict.fromkeys(sc["pop"] + sc["born"]))
        sc["born"] = []
        if self.map_elites:
            for n in pool:
                key = self.niche(state, n, task)
                if key not in sc["archive"] or tree[n]["value"] > tree[sc["archive"][key]]["value"]:
                    sc["archive"][key] = n
            sc["pop"] = sorted(sc["archive"].values())
        else:
            bonus = self.novelty(state, pool) if self.novelty_weight else {n: 0.0 for n in pool}
            elite = max(pool, key=lambda n: (tree[n]["value"], -n))
            rest = sorted((n for n in pool if n != elite),
                          key=lambda n: (-(tree[n]["value"] + self.novelty_weight * bonus[n]), n))
            sc["pop"] = [elite] + rest[: self.population - 1]
        values = [tree[n]["value"] for n in sc["pop"]]
        sc["log_generations"].append({"generation": sc["gen"], "best": max(values), "mean": float(np.mean(values)),
                                      "size": len(values)})

    def next_generation(self, state: ProblemState, task: Task) -> None:
        self.select(state, task)
        sc = state.scratch
        sc["gen"] += 1
        if self.max_generations is not None and sc["gen"] > self.max_generations:
            return
        for _ in range(self.offspring):
            a = self.parent(state)
            if self.rng.random() < self.crossover_rate and (child := self.crossover(state, a, self.parent(state), task)):
                sc["born"].append(child)
            else:
                sc["growing"].append(self.mutation(state, a))
        if not sc["growing"]:  # an all-crossover generation would spend nothing and never end
            sc["growing"].append(self.mutation(state, self.parent(state)))

    def parent(self, state: ProblemState) -> int:
        """Uniform over MAP-Elites niches; otherwise a binary tournament on fitness."""
        pop = state.scratch["pop"]
        if self.map_elites:
            return pop[int(self.rng.integers(len(pop)))]
        a, b = (pop[int(i)] for i in self.rng.integers(len(pop), size=2))
        return max(a, b, key=lambda n: (state.tree[n]["value"], -n))

    def mutation(self, state: ProblemState, node: int) -> tuple[int, int, str | None]:
        """A growth request: resample after a random step of the trace, or rewrite that step.
        A rewrite is sampled under the rewrite prompt, not under its tree prefix, so `expand`
        marks the rewritten step `off_context` (trainers keep it as context only); the steps
        grown after it are sampled from the plain prefix as usual."""
        path = state.tree.path(node)
        j = int(self.rng.integers(len(path) - 1))
        if self.rewrite_rate and self.rng.random() < self.rewrite_rate:
            prompt = self.rewrite_prompt.format(prompt=state.prompt, prefix=state.tree.prefix(path[j]),
                                                step=state.tree[path[j + 1]]["text"])
            return path[j], 1, prompt
        return path[j], 1, None

    def crossover(self, state: ProblemState, a: int, b: int, task: Task) -> int | None:
        """Splice: a's steps up to a shared step, then b's steps after it (copied nodes
        that cost no tokens, with their sampled token ids and logprobs). The copies were
        sampled after b's prefix, so they are `off_context` unless that prefix is a's text
        too. None when the traces share no intermediate step."""
        tree = state.tree
        pa, pb = tree.path(a)[1:-1], tree.path(b)[1:-1]
        pairs = [(i, j) for i in pa for j in pb if i != j and step_key(tree[i]["text"]) == step_key(tree[j]["text"])]
        if not pairs:
            return None
        i, j = pairs[int(self.rng.integers(len(pairs)))]
        off_context = tree.prefix(i) != tree.prefix(j)
        node = i
        for m in tree.path(b)[tree.path(b).index(j) + 1:]:
            d = tree[m]
            node = tree.add_child(node, d["text"], logprobs=d["logprobs"], token_ids=d["token_ids"], prior=d["prior"],
                                  tokens=0, iteration=self.round, finish_reason=d["finish_reason"],
                                  off_context=off_context or d["off_context"])
        label_terminal(state, node, task)
        return node
