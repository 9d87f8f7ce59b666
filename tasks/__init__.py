"""Problems, prompt formats, answer extraction and verifiers. Imports nothing of ours."""

from tasks.base import Problem, Task
from tasks.countdown import Countdown

__all__ = ["Countdown", "Problem", "Task"]
