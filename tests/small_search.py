"""Hydra overrides that shrink every search strategy to a few nodes: end-to-end tests run
each strategy for real (HF or vLLM policy) in seconds."""

SMALL_SEARCH = {
    "sampling": ["search.n=2", "search.max_new_tokens=24"],
    "tot": ["search.k=2", "search.beam=1", "search.max_depth=2", "search/evaluator=terminal"],
    "tot_dfs": ["search.k=2", "search.max_depth=2", "search.threshold=0.0", "search/evaluator=self_eval",
                "search.evaluator.votes=1"],
    "mcts": ["search.n_simulations=3", "search.k=2", "search.max_depth=2", "search.evaluator.n=1",
             "search.evaluator.max_new_tokens=16"],
    "evolution": ["search.population=2", "search.offspring=2", "search.max_depth=2"],
    "best_first": ["search.k=2", "search.max_depth=2", "search/evaluator=terminal"],
}
