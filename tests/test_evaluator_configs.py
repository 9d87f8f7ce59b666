"""Evaluators have one registry, the YAML files of `conf/search/evaluator/`: a name
(`XoT(evaluator="self_eval")`) builds that file's `_target_`, and each file's knobs are the
class's own code defaults, so direct construction and the config group agree."""

import pytest
from omegaconf import OmegaConf

from search.evaluators import EVALUATOR_CONFIGS, TerminalEvaluator, make_evaluator

NAMED = sorted(p.stem for p in EVALUATOR_CONFIGS.glob("*.yaml") if p.stem != "value_model")


@pytest.mark.parametrize("name", NAMED)
def test_a_name_builds_its_yaml_which_equals_the_code_defaults(name):
    built = make_evaluator(name)
    target = OmegaConf.load(EVALUATOR_CONFIGS / f"{name}.yaml")._target_
    assert f"{type(built).__module__}.{type(built).__name__}" == target and built.name == name
    assert vars(built) == vars(type(built)())


def test_none_is_terminal_and_unknown_or_incomplete_names_fail_in_one_line():
    assert isinstance(make_evaluator(None), TerminalEvaluator)
    for name, words in [("nope", "unknown evaluator 'nope'"), ("value_model", "search/evaluator=value_model")]:
        with pytest.raises(ValueError) as err:
            make_evaluator(name)
        assert words in str(err.value) and "\n" not in str(err.value)
