"""Language-model backends behind one `Policy` protocol (`TrainablePolicy` for the ones trainers update). Imports nothing of ours."""

from policies.base import Policy, Sample, TrainablePolicy

__all__ = ["Policy", "Sample", "TrainablePolicy"]
