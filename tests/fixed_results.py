"""Search results written by hand: a depth-1 tree whose terminal children are given
traces, for trainer and ORM tests that need exact data rather than a sampler's."""

from collections.abc import Callable

from search import SearchResult, SearchTree
from tasks import Problem


def searched(problem: Problem, prompt: str, completions: list[tuple[str, float]], strategy: str = "sampling",
             answer: Callable[[str], str | None] = str.strip) -> SearchResult:
    """One result for `problem`: a child of the root per (text, reward), its answer `answer(text)`."""
    tree = SearchTree(problem.id, prompt, strategy=strategy)
    for text, reward in completions:
        tree.add_child(0, text, terminal=True, reward=reward, answer=answer(text))
    return SearchResult(problem, tree, tokens=0, calls=1, wall_time=0.0)
