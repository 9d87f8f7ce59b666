"""Return-conditioned RL (RCRL; Havrilla et al. 2024, after decision transformers).

Every searched trace, right or wrong, becomes a training example whose prompt starts with
a return marker: `GOOD` when its reward reaches `good_threshold`, else `BAD`. The policy is
fine-tuned on all of them (plain SFT through `training.sft.sft`), learning what a good
and a bad trace look like for each problem; at search and evaluation time it is asked
with the `GOOD` marker only.

The markers are plain text lines, not special tokens, so every tokenizer (the tiny
character tokenizer included) encodes them without a vocabulary change. They are defined
here and nowhere else.

Conditioning at search time needs no strategy to know about RCRL: `setup` returns a
`ConditionedTask` that delegates to the real task and prepends `GOOD` to every prompt;
the loop searches and evaluates through the task `setup` returns
(`task = trainer.setup(policy, task) or task`). Until the first round has trained on
marked traces the marker is empty: the initial policy has never seen one, and a marker it
cannot read only perturbs it (on the tiny Countdown base, `<good>` halves the reward), which
would make the base evaluation and the first round's data worse than the base really is.

With mostly wrong traces, training on all of them drags a small policy toward its own
mistakes faster than the marker separates them (on easy Countdown at 2% correct, the reward
falls 0.13 -> 0.03 in four rounds). `bad_per_good` balances the classes as reward-conditioned
methods often do: per problem, at most that many BAD traces per GOOD one are kept.

Which traces are GOOD follows `reward` exactly as Expert Iteration's correct ones do
(`training.ei`): the verifier's reward, every text step's task reward (dense), or the run's
ORM's score, against `good_threshold` (null: 1.0, or 0.5 with `reward: orm`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from policies import TrainablePolicy
from search import SearchResult
from tasks import Problem, Task
from training.ei import ExpertIteration, dedup_key
from training.rewards import RewardModel
from training.step_runner import StepRunner

GOOD = "<good>\n"  # return marker of traces with reward >= good_threshold; the one used to sample
BAD = "<bad>\n"  # return marker of every other trace


class ConditionedTask(Task):
    """`task` with `marker` prepended to every prompt; everything else is the task's own.

    Every public method and attribute of `Task` is delegated here by name (no
    `__getattr__`), so the wrapper is exactly a `Task`; `tests/test_rcrl.py` iterates
    `Task`'s public methods and fails when one added later is not delegated.
    `step_reward` receives prefixes that may start with the (conditioned) prompt; the
    marker is stripped first so the task recognises its own prompt."""

    def __init__(self, task: Task, marker: str = GOOD):
        self.task, self.marker = task, marker
        self.name, self.step_stop, self.prompt_style = task.name, task.step_stop, task.prompt_style
        self.step_reward_reads_gold = task.step_reward_reads_gold

    def prompt(self, problem: Problem) -> str:
        return self.marker + self.task.prompt(problem)

    def step_reward(self, problem: Problem, prefix: str, step: str) -> float | None:
        return self.task.step_reward(problem, prefix.removeprefix(self.marker), step)

    def problems(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Problem]:
        return self.task.problems(split, limit, seed)

    def is_final(self, step: str) -> bool:
        return self.task.is_final(step)

    def extract_answer(self, text: str) -> str | None:
        return self.task.extract_answer(text)

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return self.task.check_answer(problem, answer)

    def reward(self, problem: Problem, text: str) -> float:
        return self.task.reward(problem, text)

    def reference_traces(self, problem: Problem) -> list[str]:
        return self.task.reference_traces(problem)

    def solution_key(self, problem: Problem, text: str) -> str:
        return self.task.solution_key(problem, text)

    def solutions(self, problem: Problem) -> list[str] | None:
        return self.task.solutions(problem)

    def descriptor(self, problem: Problem, text: str) -> Hashable | None:
        return self.task.descriptor(problem, text)

    def set_chat_template(self, template: Any) -> None:
        self.task.set_chat_template(template)

    def state_space(self) -> Any:
        return self.task.state_space()

    def split_steps(self, text: str) -> list[str]:
        return self.task.split_steps(text)


def conditioned_examples(results: list[SearchResult], task: Task, iteration: int, good_threshold: float = 1.0,
                         strategy: str = "", bad_per_good: float | None = None,
                         scores: list[list[float]] | None = None) -> list[dict[str, Any]]:
    """Every trace of one round, deduplicated by (problem, whitespace-normalised text), with
    its prompt rebuilt from the unconditioned `task` and prefixed by its return marker (GOOD
    when its score, the reward unless `scores` gives one per trace of each result, reaches
    `good_threshold`); with `bad_per_good`, only the first floor(bad_per_good * #GOOD) BAD
    traces of each problem."""
    seen: set[tuple[str, str]] = set()
    out = []
    for i, r in enumerate(results):
        prompt = task.prompt(r.problem)
        good, bad = [], []
        for j, t in enumerate(r.traces()):
            key = dedup_key(t.problem_id, t.text)
            if key in seen:
                continue
            seen.add(key)
            is_good = (t.reward if scores is None else scores[i][j]) >= good_threshold
            (good if is_good else bad).append({"problem_id": t.problem_id, "prompt": (GOOD if is_good else BAD) + prompt,
                                               "completion": t.text, "reward": t.reward, "iteration": iteration,
                                               "strategy": strategy})
        out += good + (bad if bad_per_good is None else bad[: math.floor(bad_per_good * len(good))])
    return out


class RCRL(ExpertIteration):
    """Return-conditioned SFT over all searched traces; samples conditioned on `GOOD`.

    Shares Expert Iteration's data set, reset and optimiser handling (and its checkpoint
    state); only the examples differ: every trace, marked by its return."""

    name = "rcrl"

    def __init__(self, sft: dict | None = None, good_threshold: float | None = None, bad_per_good: float | None = None,
                 reset_each_round: bool = True, accumulate: bool = True, reward: str = "sparse",
                 orm: RewardModel | None = None, seed: int = 0, progress: bool = False,
                 runner: StepRunner | None = None):
        super().__init__(sft, reset_each_round, accumulate, reward, good_threshold, orm, seed, progress, runner)
        if bad_per_good is not None and bad_per_good < 0:
            raise ValueError(f"trainer.bad_per_good must be >= 0 or null, got {bad_per_good}")
        self.bad_per_good = bad_per_good

    def setup(self, policy: TrainablePolicy, task: Task) -> ConditionedTask:
        """Returns the task the loop must search and evaluate with: plain prompts until the
        first round has trained on marked traces, `GOOD`-conditioned ones after."""
        super().setup(policy, task)
        self.task = task
        self.conditioned = ConditionedTask(task, "")
        return self.conditioned

    def examples(self, iteration: int, results: list[SearchResult], strategy: str) -> list[dict[str, Any]]:
        return conditioned_examples(results, self.task, iteration, self.good_threshold, strategy, self.bad_per_good,
                                    self.scores(results))

    def step(self, iteration: int, results: list[SearchResult]) -> dict[str, float]:
        stats = super().step(iteration, results)
        self._condition_on_data()
        good = sum(d["prompt"].startswith(GOOD) for d in self.dataset)
        return {**stats, "good_fraction": good / max(1, len(self.dataset))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._condition_on_data()

    def _condition_on_data(self) -> None:
        """Ask with GOOD once the policy has been trained on marked traces; the marker follows
        from the data set alone, so a resumed run asks exactly as an uninterrupted one."""
        self.conditioned.marker = GOOD if self.dataset else ""
