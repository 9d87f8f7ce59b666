"""A task and a strategy written outside plateau, run through `training.run` (docs/extending.md)."""
