"""Solve rate of every search strategy at equal token budgets (a script, not a test).

    python benchmarks/search_budget.py --problems 30 --budgets 256 1024 4096 --seeds 0 1
    python benchmarks/search_budget.py --policy-path /path/to/hf_folder   # skip building the tiny base

For Countdown and the Game of 24 (`split=tot`, rows 901-1000) it runs each strategy of
`conf/search/` with the tiny base policy (`training.base_model.tiny_base`, built and cached
per task) under each per-problem token budget and seed, prints a table of the mean solve
rate (the strategy's own answer is correct) and tokens actually spent, and draws
solve rate vs tokens to a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from search.budget import Budget
from tasks.config import build_task, use_tokenizer
from training.schema import store_schema

CONF = Path(__file__).resolve().parents[1] / "conf"
store_schema()  # conf/config.yaml names the schema (training/schema.py): registered before composing
STRATEGIES = ["sampling", "tot", "tot_dfs", "mcts", "evolution", "best_first"]
# Each strategy runs at the sizes of conf/equal_spend/<strategy>.yaml (the plateau sweep's),
# large enough that the token budget, not the strategy's own size, ends the search:
# otherwise a strategy stops at its natural size (best-of-8 at ~450 tokens) and larger
# budgets measure nothing new. ToT ends at its depth limit whatever the budget.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "game24" / "24.csv"
# task name -> (config group, overrides, split); Game of 24 reads the ToT puzzles when the data is at hand
TASKS = {"countdown": ("countdown", [], "test"),
         "game24": ("game24", [f"task.path={DATA}"] if DATA.exists() else [], "tot")}


def load(task_name: str, strategy: str, seed: int, extra: list[str]):
    group, overrides, split = TASKS[task_name]
    if not (CONF / "task" / f"{group}.yaml").exists():
        raise SystemExit(f"conf/task/{group}.yaml is missing: cannot benchmark {task_name}")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"task={group}", f"+equal_spend={strategy}", f"seed={seed}", *overrides,
                                           *extra])
    return cfg, split


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for task_name in args.tasks:
        policy = None
        for strategy in args.strategies:
            for seed in args.seeds:
                cfg, split = load(task_name, strategy, seed, args.override)
                task = build_task(cfg.task)
                if policy is None:
                    if args.policy_path:
                        from policies.hf import HFPolicy

                        policy = HFPolicy.from_pretrained(args.policy_path)
                    else:
                        policy = instantiate(cfg.policy)
                use_tokenizer(task, policy.tokenizer)
                try:
                    problems = task.problems(split, limit=args.problems, seed=seed)
                except (ValueError, KeyError) as e:
                    print(f"skip {task_name}: split {split!r} unavailable ({e})")
                    break
                for tokens in args.budgets:
                    strategy_obj = instantiate(cfg.search)
                    results = strategy_obj.search(problems, policy, task, Budget(tokens_per_problem=tokens))
                    solved = np.mean([task.check_answer(r.problem, r.answer) for r in results])
                    spent = np.mean([r.tokens for r in results])
                    rows.append({"task": task_name, "strategy": strategy, "seed": seed, "budget": tokens,
                                 "solve_rate": float(solved), "tokens": float(spent),
                                 "wall_s": float(sum(r.wall_time for r in results))})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def report(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    print(f"\n{'task':10} {'strategy':11} {'budget':>7} {'solve':>7} {'± sd':>6} {'tokens':>8}")
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for strategy in sorted({r["strategy"] for r in rows if r["task"] == task}):
            xs, ys = [], []
            for budget in sorted({r["budget"] for r in rows}):
                cell = [r for r in rows if (r["task"], r["strategy"], r["budget"]) == (task, strategy, budget)]
                if not cell:
                    continue
                rate = [r["solve_rate"] for r in cell]
                spent = float(np.mean([r["tokens"] for r in cell]))
                print(f"{task:10} {strategy:11} {budget:7d} {np.mean(rate):7.3f} {np.std(rate):6.3f} {spent:8.1f}")
                xs.append(spent)
                ys.append(float(np.mean(rate)))
            ax.plot(xs, ys, marker="o", label=strategy)
        ax.set(xscale="log", xlabel="tokens spent per problem", ylabel="solve rate", title=task)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nplot: {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--budgets", nargs=3, type=int, default=[256, 1024, 4096], help="tokens per problem")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--problems", type=int, default=30)
    p.add_argument("--policy-path", help="a Hugging Face model folder to use instead of the tiny base")
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides, e.g. search/evaluator=rollout")
    p.add_argument("--out", type=Path, default=Path("search_budget"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=2))
    report(rows, args.out / "solve_rate_vs_tokens.png")


if __name__ == "__main__":
    main()
