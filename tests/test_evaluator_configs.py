"""Evaluators have one registry, the `search/evaluator` config group (`conf/search/evaluator/`):
Hydra builds the chosen file's `_target_` and hands the object to the strategy. Each file's
knobs are the class's own code defaults, so direct construction and the config group agree."""

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from search.evaluators import TerminalEvaluator
from search.tot import TreeOfThoughts

from composing import CONF, composed

NAMED = sorted(p.stem for p in (CONF / "search" / "evaluator").glob("*.yaml") if p.stem != "value_model")


@pytest.mark.parametrize("name", NAMED)
def test_each_evaluator_config_builds_its_class_with_the_code_defaults(name):
    node = composed("search=tot", f"search/evaluator={name}").search.evaluator
    built = instantiate(node)
    assert f"{type(built).__module__}.{type(built).__name__}" == node._target_ and built.name == name
    assert vars(built) == vars(type(built)())


def test_no_evaluator_is_the_terminal_one_and_an_unknown_name_fails_at_composition():
    assert isinstance(TreeOfThoughts(evaluator=None).evaluator, TerminalEvaluator)
    with pytest.raises(ConfigCompositionException, match="nope"):
        composed("search=tot", "search/evaluator=nope")


def test_an_evaluator_named_as_a_string_is_one_clear_error():
    """`search.evaluator=terminal` replaces the group's node with a string; the strategy says
    how to choose it instead of failing at the first score with an AttributeError."""
    import pytest
    from hydra.utils import instantiate

    with pytest.raises(Exception, match=r"search.evaluator='terminal': choose an evaluator through its config group, "
                                        r"search/evaluator=terminal"):
        instantiate(composed("search=tot", "search.evaluator=terminal").search, seed=0)
