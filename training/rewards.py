"""The reward switch every trainer shares: `trainer.reward` = sparse | dense | orm.

Each trainer asks for what its algorithm consumes, from one place:

* `step_scores`: one score per text step of a trace (`task.split_steps`), PPO's token
  rewards. sparse: 0 on every step but the last, which gets the outcome; dense: the task's
  own step rewards (`task.step_reward`, None counts 0); orm: the outcome reward model's
  P(correct) after each step prefix.
* `trace_scores`: one score per trace, what GRPO groups and EI/RCRL threshold. sparse: the
  verifier's outcome reward; dense: the task's step rewards combined by `dense`
  ("sum" for GRPO, "min" for EI/RCRL: a trace counts as good only when every step is);
  orm: the ORM's P(correct) of the whole trace.

The ORM is anything with `value(texts) -> list[float]`; `training.run` builds the run's
(conf/orm) and hands it to the trainer as `orm=`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from search.tree import Trace
from tasks import Problem, Task
from tasks.rewards import step_rewards

REWARDS = ("sparse", "dense", "orm")
DENSE_COMBINE = {"sum": sum, "min": lambda xs: min(xs, default=0.0)}


class RewardModel(Protocol):
    """What `reward: orm` needs: a score for each (prompt + partial trace) text."""

    def value(self, texts: list[str]) -> list[float]: ...


def check_reward(reward: str) -> str:
    """`reward`, or one clear error naming the key and the choices."""
    if reward not in REWARDS:
        raise ValueError(f"trainer.reward: {reward!r} is not one of {list(REWARDS)}")
    return reward


def require_orm(reward: str, orm: RewardModel | None) -> None:
    if reward == "orm" and orm is None:
        raise ValueError("trainer.reward=orm needs an outcome reward model: training.run builds the run's ORM "
                         "(conf/orm) and passes it; in code pass orm=<object with value(texts) -> list[float]>")


def _orm_values(orm: RewardModel, texts: list[str]) -> list[float]:
    values = [float(v) for v in orm.value(texts)] if texts else []
    if len(values) != len(texts):
        raise ValueError(f"the ORM returned {len(values)} scores for {len(texts)} texts")
    return values


def step_scores(task: Task, items: Sequence[tuple[Problem, Trace]], reward: str,
                orm: RewardModel | None = None) -> list[list[float]]:
    """One score per text step of each (problem, trace); the ORM is asked in one batch."""
    require_orm(check_reward(reward), orm)
    if reward != "orm":
        return [step_rewards(task, problem, trace.text, reward) for problem, trace in items]
    texts, owners = [], []
    for i, (_, trace) in enumerate(items):
        prefix = trace.prompt
        for step in task.split_steps(trace.text):
            prefix += step
            texts.append(prefix)
            owners.append(i)
    out: list[list[float]] = [[] for _ in items]
    for i, score in zip(owners, _orm_values(orm, texts)):
        out[i].append(score)
    return out


def trace_scores(task: Task, items: Sequence[tuple[Problem, Trace]], reward: str, orm: RewardModel | None = None,
                 dense: str = "sum") -> list[float]:
    """One score per (problem, trace): outcome, combined step rewards, or the ORM's value."""
    require_orm(check_reward(reward), orm)
    if reward == "sparse":
        return [trace.reward for _, trace in items]
    if reward == "orm":
        return _orm_values(orm, [trace.prompt + trace.text for _, trace in items])
    combine = DENSE_COMBINE[dense]
    return [float(combine(steps)) for steps in step_scores(task, items, "dense")]
