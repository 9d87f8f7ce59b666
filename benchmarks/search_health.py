"""Does every strategy spend its budget, and does every node evaluator carry a signal?
(a script, not a test)

    python -m benchmarks.search_health --problems 32 --budgets 512 1024
    python -m benchmarks.search_health --only evaluators --problems 32

Part 1 (`spend`): each strategy of `conf/equal_spend/` on the default Countdown base at
each per-problem token budget: mean and min spent fraction, stop reasons, and wall time
per problem; the ratio of wall times between the budgets says whether time grows
linearly with the budget.

Part 2 (`evaluators`): ToT, DFS and best-first with every node evaluator (step_check,
self_eval, rollout) at one budget: the self_eval parse rate, the spread (std) of node
scores, and `value_auc` (the score against whether one of 8 fresh rollouts from the node
is correct; `search.health`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from hydra.utils import instantiate

from benchmarks.search_budget import load
from search.budget import Budget
from search.health import search_health, value_auc
from tasks.config import build_task, use_tokenizer

STRATEGIES = ["sampling", "tot", "tot_dfs", "mcts", "evolution", "best_first"]
EVALUATED = ["tot", "tot_dfs", "best_first"]
EVALUATORS = ["step_check", "self_eval", "rollout"]


def searched(strategy: str, tokens: int, problems: int, seed: int, extra: list[str], policy=None):
    cfg, _ = load("countdown", strategy, seed, extra)
    task = build_task(cfg.task)
    policy = policy or instantiate(cfg.policy)
    use_tokenizer(task, policy.tokenizer)
    started = time.perf_counter()
    results = instantiate(cfg.search).search(task.problems("test", limit=problems, seed=seed), policy, task,
                                             Budget(tokens_per_problem=tokens))
    return results, policy, task, time.perf_counter() - started


def spend(args: argparse.Namespace) -> None:
    print(f"{'strategy':11} {'budget':>6} {'spent mean':>10} {'spent min':>9} {'budget/exh/size':>15} {'s/problem':>9}")
    policy = None
    for strategy in args.strategies:
        walls = []
        for tokens in args.budgets:
            results, policy, _, wall = searched(strategy, tokens, args.problems, args.seed, [], policy)
            h = search_health(results, Budget(tokens_per_problem=tokens))
            walls.append(wall)
            print(f"{strategy:11} {tokens:6d} {h['spent_fraction_mean']:10.3f} {h['spent_fraction_min']:9.3f} "
                  f"{h['stop_budget']:>5}/{h['stop_exhausted']}/{h['stop_size']:<7} {wall / args.problems:9.3f}",
                  flush=True)
        print(f"{strategy:11} wall time x{walls[-1] / walls[0]:.2f} for budget x{args.budgets[-1] / args.budgets[0]:.2f}")


def evaluators(args: argparse.Namespace) -> None:
    print(f"{'strategy':11} {'evaluator':11} {'parse rate':>10} {'score std':>9} {'value_auc':>9} {'nodes':>5}")
    policy = None
    for strategy in EVALUATED:
        for evaluator in EVALUATORS:
            results, policy, task, _ = searched(strategy, args.budgets[-1], args.problems, args.seed,
                                                [f"search/evaluator={evaluator}"], policy)
            h = search_health(results, Budget(tokens_per_problem=args.budgets[-1]))
            scores = [d["score"] for r in results for n, d in r.tree.graph.nodes(data=True)
                      if d["score"] is not None and not d["terminal"]]
            auc = value_auc(results, policy, task, nodes=args.auc_nodes, rollouts=8, max_new_tokens=160,
                            seed=args.seed)
            rate = "-" if h["eval_parse_rate"] is None else f"{h['eval_parse_rate']:.3f}"
            value = "-" if auc["value_auc"] is None else f"{auc['value_auc']:.3f}"
            print(f"{strategy:11} {evaluator:11} {rate:>10} {np.std(scores) if scores else 0:9.3f} {value:>9} "
                  f"{auc['value_auc_nodes']:5d}", flush=True)
            print(json.dumps({"strategy": strategy, "evaluator": evaluator, **h, **auc}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["spend", "evaluators"])
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--budgets", nargs="+", type=int, default=[512, 1024], help="tokens per problem")
    p.add_argument("--problems", type=int, default=32)
    p.add_argument("--auc-nodes", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.only != "evaluators":
        spend(args)
    if args.only != "spend":
        evaluators(args)


if __name__ == "__main__":
    main()
