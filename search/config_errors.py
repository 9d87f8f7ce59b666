"""Hydra's composition errors in `search.config_check`'s form: one line naming the key, exit code 2.

The schema (`search.schema`, `training.schema`) makes composition itself reject a wrong type
(`iterations=abc`) or a key it does not declare (a typo in an experiment YAML). Hydra
would print such an error over several lines (message, `full_key`, `object_type`, a hint
about HYDRA_FULL_ERROR) and exit 1. An entry point runs under `composition_errors(...)`
instead: it sets HYDRA_FULL_ERROR so that Hydra raises the error rather than printing it,
turns it into one line in the words of the range checks, and exits 2. `Composed`, a
Hydra callback that `conf/config.yaml` lists, unsets the variable as soon as the first
composition has succeeded, so errors of the run itself reach Hydra's own display as before.
A user who set HYDRA_FULL_ERROR gets Hydra's full traceback, as asked.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from search.config_check import Knob

FULL_ERROR = "HYDRA_FULL_ERROR"
_raising = False  # True while composition_errors has set FULL_ERROR and composition has not succeeded yet


@contextmanager
def composition_errors(*tables: Mapping[str, Knob]) -> Iterator[None]:
    """Run a Hydra main inside: a composition error is printed as one line to stderr and exits 2."""
    global _raising
    if os.environ.get(FULL_ERROR):
        yield
        return
    os.environ[FULL_ERROR] = "1"
    _raising = True
    try:
        yield
    except (ConfigCompositionException, OverrideParseException) as e:
        print(error_line(e, *tables), file=sys.stderr)
        sys.exit(2)
    finally:
        _restore()


def _restore() -> None:
    global _raising
    if _raising:
        os.environ.pop(FULL_ERROR, None)
        _raising = False


class Composed(Callback):
    """Hands errors back to Hydra once the run's (or sweep's) config has composed."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _restore()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _restore()


def error_line(error: Exception, *tables: Mapping[str, Knob]) -> str:
    """`config error: <key>=<value> is not allowed; expected ...` for a wrong type, `<key> is not
    a known key` for a typo, with the file when a YAML holds it; Hydra's own text otherwise
    (`Could not find 'search/nope'` and the options it lists)."""
    cause = error.__cause__ or error.__context__
    where = re.match(r"In '([^']+)':", str(error))
    at = f" (in {where.group(1)})" if where else ""
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        knobs = {path: knob for table in tables for path, knob in table.items()}
        key = cause.full_key
        if isinstance(cause, ValidationError) and key in knobs:
            return f"config error: {key}={cause.value!r} is not allowed; expected {knobs[key].allowed()}{at}"
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
            parent = key.rpartition(".")[0]
            if key in knobs or any(k.startswith(key + ".") for k in knobs):  # another choice's key (PPO's lam)
                return (f"config error: {key} is not a key of the {parent} this config composes{at}; other {parent} "
                        f"choices have it: choose one of them on the command line (in a sweep, a group swept in "
                        f"hydra.sweeper.params is chosen only per job)")
            siblings = [p for p in knobs if p.rpartition(".")[0] == parent]
            guess = difflib.get_close_matches(key, siblings, n=1)
            return f"config error: {key} is not a known key{at}" + (f"; did you mean {guess[0]}?" if guess else "")
        return f"config error: {key}: {cause.msg.splitlines()[0]}{at}"
    return f"config error: {error}"
