"""Per-step rewards of a trace, for trainers that credit steps (PPO/GRPO with process
rewards) or only outcomes.

`reward_mode` (a trainer config key) is one of:
    sparse   every step 0.0 except the last, which gets `task.reward(problem, trace)`
    dense    each step gets `task.step_reward(problem, prefix, step)` (None counts 0.0);
             tasks give a final-answer step the outcome reward, so the last entry of a
             finished trace is the outcome in both modes
"""

from __future__ import annotations

from tasks.base import Problem, Task

REWARD_MODES = ("sparse", "dense")


def step_rewards(task: Task, problem: Problem, trace: str, mode: str) -> list[float]:
    """One reward per step of `trace` (the text after the prompt), by `mode`."""
    if mode not in REWARD_MODES:
        raise ValueError(f"reward_mode: {mode!r} is not one of {REWARD_MODES}")
    steps = task.split_steps(trace)
    if not steps:
        return []
    if mode == "sparse":
        return [0.0] * (len(steps) - 1) + [task.reward(problem, trace)]
    rewards, prefix = [], ""
    for step in steps:
        value = task.step_reward(problem, prefix, step)
        rewards.append(0.0 if value is None else float(value))
        prefix += step
    return rewards
