"""Language-model backends behind one `Policy` protocol. Imports nothing of ours."""

from policies.base import Policy, Sample

__all__ = ["Policy", "Sample"]
