"""Problems, prompt formats, answer extraction and verifiers. Imports nothing of ours."""

from tasks.base import Problem, Task

__all__ = ["Problem", "Task"]
