"""What GSM8K and SVAMP share: numeric answers, prompt styles and the final-answer line.

Trace format (the one place it is defined for word problems):

    step     one line of reasoning, ending with "\\n"  (e.g. "She sold 48/2 = 24 clips in May.\\n")
    final    a line with an answer marker, canonically "The answer is 72.\\n"

A step is final when it starts with an answer marker (`The answer is`, `Final answer is`,
`Answer:`, `####`) or contains `\\boxed{`, so instruct models' usual endings are
recognised while "... so the answer is 15 gallons * 8 ..." inside a step is not. Answers are extracted by
`tasks.answers` (marker first, else last number) and compared numerically with a tolerance.

Prompt styles (`prompt_style`):
    plain    "Question: <question>\\nAnswer:\\n"
    fewshot  `fewshot_k` solved train problems (chosen with `seed`) in the plain format,
             each followed by its reference trace and a blank line, then the plain prompt
    chat     the policy's chat template applied to one user message (an instruction and
             the question); the caller provides it with `set_chat_template(fn_or_tokenizer)`
             because tasks/ cannot import policies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

from tasks.answers import extract_number, parse_number, same_number
from tasks.base import Problem, Task, fewshot_prefix
from tasks.expr import format_number

PROMPT_STYLES = ("plain", "fewshot", "chat")
INSTRUCTION = "Solve the problem step by step, one step per line. End with a line 'The answer is N.'"
_FINAL = re.compile(r"\s*(?:(?:the\s+)?(?:final\s+)?answer\s+is|answer\s*:|####)|.*\\boxed\{", re.IGNORECASE)

ChatTemplate = Callable[[list[dict[str, str]]], str]


class WordProblemTask(Task):
    """A task whose problems have one numeric gold answer (`Problem.answer`)."""

    step_stop = "\n"

    def __init__(self, prompt_style: str = "plain", fewshot_k: int = 4, seed: int = 0) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"{self.name} config prompt_style: {prompt_style!r} is not one of {PROMPT_STYLES}")
        if fewshot_k < 0:
            raise ValueError(f"{self.name} config fewshot_k: must be >= 0, got {fewshot_k}")
        self.prompt_style, self.fewshot_k, self.seed = prompt_style, fewshot_k, seed
        self._chat_template: ChatTemplate | None = None

    def set_chat_template(self, template: ChatTemplate | Any) -> None:
        """Give the `chat` prompt style its template: a function from a message list to the
        prompt text, or a tokenizer with `apply_chat_template`."""
        if callable(getattr(template, "apply_chat_template", None)):
            tokenizer = template
            template = lambda messages: tokenizer.apply_chat_template(  # noqa: E731
                messages, tokenize=False, add_generation_prompt=True
            )
        if not callable(template):
            raise TypeError("set_chat_template needs a callable or a tokenizer with apply_chat_template")
        self._chat_template = template

    def prompt(self, problem: Problem) -> str:
        if self.prompt_style == "chat":
            if self._chat_template is None:
                raise ValueError(f"{self.name}: prompt_style 'chat' needs set_chat_template(...) first")
            return self._chat_template([{"role": "user", "content": f"{INSTRUCTION}\n\n{problem.question}"}])
        plain = _plain_prompt(problem)
        return self._fewshot + plain if self.prompt_style == "fewshot" else plain

    @cached_property
    def _fewshot(self) -> str:
        return fewshot_prefix(self, self.fewshot_k, self.seed, _plain_prompt)

    def is_final(self, step: str) -> bool:
        return _FINAL.match(step[:1000]) is not None

    def extract_answer(self, text: str) -> str | None:
        value = extract_number(text)
        return None if value is None else format_number(value)

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and same_number(parse_number(answer), parse_number(problem.answer))

    def final_line(self, answer: str) -> str:
        return f"The answer is {answer}.\n"


def _plain_prompt(problem: Problem) -> str:
    return f"Question: {problem.question}\nAnswer:\n"
