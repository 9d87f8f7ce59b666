"""Building a task from its Hydra config group.

A task config may carry `limit` (how many problems `search.run` evaluates, so that
`task.limit=50` works on the command line) and `split` (which split it evaluates instead of
`eval.split`: `task=game24 task.split=tot`); they are run settings, not part of the task,
so they are neither passed to the constructor nor hashed into cached base models.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from tasks.base import Task

RUN_KEYS = ("limit", "split")


def task_definition(cfg: Any) -> dict[str, Any]:
    """The task config as a plain dict without run settings."""
    data = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    return {k: v for k, v in data.items() if k not in RUN_KEYS}


def build_task(cfg: Any) -> Task:
    return instantiate(task_definition(cfg))


def use_tokenizer(task: Task, tokenizer: object) -> None:
    """Give a task with `prompt_style: chat` the policy tokenizer's chat template; other
    tasks and styles need nothing from the tokenizer."""
    if task.prompt_style == "chat":
        task.set_chat_template(tokenizer)
