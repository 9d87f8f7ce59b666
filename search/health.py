"""Health figures of a search round: does the cell measure what its name says?

A study cell is only worth comparing when its strategy spent the budget it was given, its
node evaluator actually told good states from bad ones, and its judgements could be read.
These figures go into every `kind: train` row of `metrics.jsonl` (and `search.run`'s
metrics), and `training.report` flags the cells where they say something is broken:

* `spent_fraction_mean` / `_min`: tokens spent ÷ `budget.tokens_per_problem`, over
  problems (null without a token budget);
* `stop_<reason>`: how many problems ended by `budget`, an `exhausted` tree, or the
  strategy's own `size` limit;
* `eval_parse_rate`: the share of `self_eval` judgements that parsed (null otherwise);
  `eval_unscored`: nodes the budget's tail left without a judgement (valued `neutral`);
* `value_auc`: the ROC AUC of the node evaluator's score against whether the policy can
  still reach a correct answer from the node, estimated by `rollouts` fresh completions
  from each of up to `nodes` scored open nodes (null when nothing was scored or every
  label is the same). The labels come from rollouts, not from the strategy's own tree,
  because a tree only explores what the evaluator kept: judged on it, a pruning
  evaluator would look right by construction. Rollout tokens are not charged to the
  search budget; `value_auc_tokens` says what they cost.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import mannwhitneyu

from policies import Policy
from search.budget import Budget
from search.expand import STOP_REASONS
from search.metrics import full_reward
from search.result import SearchResult
from tasks import Task


def search_health(results: list[SearchResult], budget: Budget) -> dict[str, float | int | None]:
    """Spend, stop reasons and evaluator parse rate of one search round."""
    out: dict[str, float | int | None] = {"spent_fraction_mean": None, "spent_fraction_min": None}
    if budget.tokens_per_problem and results:
        fractions = [r.tokens / budget.tokens_per_problem for r in results]
        out.update(spent_fraction_mean=float(np.mean(fractions)), spent_fraction_min=float(min(fractions)))
    reasons = Counter(r.stop_reason for r in results)
    out.update({f"stop_{reason}": reasons.get(reason, 0) for reason in STOP_REASONS})
    meta = [r.tree.graph.graph["meta"] for r in results]
    judged = sum(m.get("log_judgements", 0) for m in meta)
    out["eval_parse_rate"] = sum(m.get("log_parsed", 0) for m in meta) / judged if judged else None
    out["eval_unscored"] = sum(m.get("log_unscored", 0) for m in meta)
    return out


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half (Mann–Whitney U)."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def value_auc(results: list[SearchResult], policy: Policy, task: Task, *, nodes: int = 32, rollouts: int = 8,
              max_new_tokens: int = 128, seed: int = 0) -> dict[str, float | int | None]:
    """`value_auc` of the round's node evaluator (see the module docstring)."""
    scored = [(r, n) for r in results for n, d in r.tree.graph.nodes(data=True)
              if d["score"] is not None and not d["terminal"]]
    if nodes <= 0 or not scored:
        return {"value_auc": None, "value_auc_nodes": 0, "value_auc_tokens": 0}
    rng = np.random.default_rng(seed)
    picked = [scored[i] for i in sorted(rng.choice(len(scored), size=min(nodes, len(scored)), replace=False))]
    prompts = [r.tree.prompt + r.tree.prefix(n) for r, n in picked]
    groups = policy.sample(prompts, n=rollouts, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0,
                           stop=None, seed=seed)
    labels = [any(full_reward(task.reward(r.problem, r.tree.prefix(n) + s.text)) for s in group)
              for (r, n), group in zip(picked, groups)]
    scores = [float(r.tree[n]["score"]) for r, n in picked]
    return {"value_auc": roc_auc(scores, labels), "value_auc_nodes": len(picked),
            "value_auc_tokens": sum(s.num_tokens for g in groups for s in g)}
