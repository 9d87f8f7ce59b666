"""A tiny reach-the-target puzzle with a known optimum, an oracle policy and an oracle value.

Start at `start`; each step is an operation ("+1", "*2" or "-1") on the current number;
after exactly `ops` operations the trace ends with "= <number>". The trace is correct when
that number is the target. The oracle policy is a real `Policy`: it reads the state from
its prompt and draws the next step from fixed probabilities with a seeded RNG, one
character per token, so search strategies run against it exactly as against a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from policies import Sample
from tasks import Problem, Task

OPS = {"+1": lambda v: v + 1, "*2": lambda v: v * 2, "-1": lambda v: v - 1}
HEADER = re.compile(r"Reach (-?\d+) from (-?\d+) in (\d+) operations\.\n")
EVAL_QUESTION = "Evaluate"  # the oracle answers value prompts that contain this word


@lru_cache(maxsize=None)
def reachable(value: int, target: int, ops_left: int) -> bool:
    if ops_left <= 0:
        return ops_left == 0 and value == target
    return any(reachable(f(value), target, ops_left - 1) for f in OPS.values())


def parse(text: str) -> tuple[int, int, int, int, list[str]]:
    """(target, start, ops, current value, steps) of a prompt plus trace prefix."""
    m = HEADER.search(text)
    if m is None:
        raise ValueError(f"not a puzzle prompt: {text[:60]!r}")
    target, start, ops = (int(g) for g in m.groups())
    steps = [s for s in text[m.end():].split("\n") if s in OPS]
    value = start
    for s in steps:
        value = OPS[s](value)
    return target, start, ops, value, steps


class PuzzleTask(Task):
    name = "puzzle"
    step_stop = "\n"

    def __init__(self, instances: list[tuple[int, int, int]] | None = None):
        self.instances = instances or [(3, 24, 3), (1, 8, 3), (2, 12, 4)]

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        out = [Problem(f"p{i}", f"{s}->{t}", str(t), {"start": s, "target": t, "ops": o})
               for i, (s, t, o) in enumerate(self.instances)]
        return out[:limit]

    def prompt(self, problem: Problem) -> str:
        m = problem.meta
        return f"Reach {m['target']} from {m['start']} in {m['ops']} operations.\n"

    def is_final(self, step: str) -> bool:
        return step.startswith("= ")

    def extract_answer(self, text: str) -> str | None:
        finals = re.findall(r"^= (-?\d+)$", text, flags=re.M)
        return finals[-1] if finals else None

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return answer == problem.answer

    def reward(self, problem: Problem, text: str) -> float:
        """Correct only when the operations really reach the target and say so."""
        _, _, ops, value, steps = parse(self.prompt(problem) + text)
        return float(len(steps) == ops and self.extract_answer(text) == str(value) == problem.answer)

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float | None:
        target, _, ops, value, steps = parse(self.prompt(problem) + prefix + step)
        return float(reachable(value, target, ops - len(steps)))

    def reference_traces(self, problem: Problem) -> list[str]:
        m = problem.meta

        def walk(value: int, left: int) -> list[str] | None:
            if left == 0:
                return [] if value == m["target"] else None
            for op, f in OPS.items():
                if (rest := walk(f(value), left - 1)) is not None:
                    return [op] + rest
            return None

        steps = walk(m["start"], m["ops"])
        return [] if steps is None else ["".join(s + "\n" for s in steps) + f"= {m['target']}\n"]

    def descriptor(self, problem: Problem, text: str) -> str:
        return str(text.count("+1"))


@dataclass
class OraclePolicy:
    """A deterministic policy over puzzle steps; it records every call it gets."""

    probs: dict[str, float] = field(default_factory=lambda: {"+1": 0.5, "*2": 0.35, "-1": 0.15})
    calls: list[dict] = field(default_factory=list)
    model: object = None
    tokenizer: object = None

    def _next(self, text: str, rng: np.random.Generator, temperature: float) -> tuple[str, float]:
        target, _, ops, value, steps = parse(text)
        if EVAL_QUESTION in text:
            return ("sure\n" if reachable(value, target, ops - len(steps)) else "impossible\n"), 0.0
        if len(steps) >= ops:
            return f"= {value}\n", 0.0
        names, p = list(self.probs), np.array(list(self.probs.values()))
        if temperature == 0:
            i = int(np.argmax(p))
        else:
            q = p ** (1.0 / temperature)
            i = int(rng.choice(len(names), p=q / q.sum()))
        return names[i] + "\n", math.log(p[i])

    def _one(self, prompt: str, rng: np.random.Generator, cap: int, temperature: float, stop: list[str] | None) -> Sample:
        text, logprobs = "", []
        while True:
            step, lp = self._next(prompt + text, rng, temperature)
            text += step
            logprobs += [lp] + [0.0] * (len(step) - 1)
            if len(text) > cap:
                return Sample(text[:cap], [ord(c) for c in text[:cap]], logprobs[:cap], "length")
            if stop or step.startswith("= ") or EVAL_QUESTION in prompt:
                return Sample(text, [ord(c) for c in text], logprobs, "stop" if stop else "eos")

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, stop=None, seed=None,
               max_new_tokens_per_prompt=None):
        caps = max_new_tokens_per_prompt or [max_new_tokens] * len(prompts)
        self.calls.append({"prompts": list(prompts), "n": n, "caps": list(caps), "seed": seed})
        out = []
        for i, (prompt, cap) in enumerate(zip(prompts, caps)):
            rngs = [np.random.default_rng([seed or 0, i, j]) for j in range(n)]
            out.append([self._one(prompt, rng, cap, temperature, stop) for rng in rngs])
        self.calls[-1]["samples"] = out
        return out

    def tokens_by_problem(self) -> dict[str, int]:
        """Tokens this oracle generated per problem (keyed by the task prompt header)."""
        spent: dict[str, int] = {}
        for call in self.calls:
            for prompt, group in zip(call["prompts"], call["samples"]):
                key = HEADER.search(prompt).group(0)
                spent[key] = spent.get(key, 0) + sum(s.num_tokens for s in group)
        return spent

    def logprobs(self, prompts, continuations):
        raise NotImplementedError("the oracle only samples")

    def save(self, path) -> None:
        raise NotImplementedError("the oracle has no weights")


class OracleValue:
    """The exact value of a puzzle state: 1 when the target is still reachable, else 0.
    With `slack` it is optimistic by that many operations (it can lead search into dead
    branches that only show as dead one step later)."""

    def __init__(self, slack: int = 0):
        self.slack = slack

    def value(self, texts: list[str]) -> list[float]:
        out = []
        for text in texts:
            target, _, ops, value, steps = parse(text)
            final = re.findall(r"^= (-?\d+)$", text, flags=re.M)
            if final:
                out.append(float(final[-1] == str(target) and value == target and len(steps) == ops))
            else:
                left = ops - len(steps)
                out.append(float(any(reachable(value, target, left + s) for s in range(self.slack + 1))))
        return out


class TinyTextScorer(torch.nn.Module):
    """A real (tiny, untrained, seeded) value model: a character-embedding bag followed by
    a linear head and a sigmoid, scoring any text in (0, 1)."""

    def __init__(self, seed: int = 0, dim: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Embedding(128, dim)
        self.head = torch.nn.Linear(dim, 1)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(128, dim, generator=g))
            self.head.weight.copy_(torch.randn(1, dim, generator=g))
            self.head.bias.zero_()

    @torch.no_grad()
    def value(self, texts: list[str]) -> list[float]:
        out = []
        for text in texts:
            ids = torch.tensor([min(ord(c), 127) for c in text] or [0])
            out.append(float(torch.sigmoid(self.head(self.embed(ids).mean(0))).item()))
        return out
