"""`python -m search.run ...`: the evaluate-only entry point under the name the README and
older run notes use; it runs `training.evaluate` (see there for what it writes).

The entry point moved to training/ because it composes every layer (the default policy's
`_target_` is `training.base_model.tiny_base`); this alias is the one module of search/
that names training/, nothing imports it, and it holds no logic of its own. It runs the
module as `__main__` (not `import`) so that Hydra finds `conf/` beside it as it does for
`python -m training.evaluate`.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("training.evaluate", run_name="__main__", alter_sys=True)
