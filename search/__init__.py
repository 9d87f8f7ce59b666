"""Search strategies over reasoning steps; imports `tasks` and `policies` protocols only."""

from search.budget import Budget, BudgetMeter
from search.result import SearchResult, Strategy
from search.tree import SearchTree, Trace

__all__ = ["Budget", "BudgetMeter", "SearchResult", "SearchTree", "Strategy", "Trace"]
