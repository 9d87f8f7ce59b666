"""Training throughput: our SFT step and GRPO step against TRL's SFTTrainer and GRPOTrainer
on the same tiny model, data and batch sizes, in one process. Prints tokens/s and ratios.

    python benchmarks/training_throughput.py --size 1m --sft-steps 8 --grpo-steps 2

SFT tokens are prompt + completion tokens of the examples trained on (the same data for
both), in fp32, under bf16 autocast (ours `sft.autocast=bfloat16`, TRL `bf16=True`), and
ours with `sft.group_by_length` (no TRL row: its sampler is a different option set). GRPO tokens are generated completion tokens per second of a whole step (sampling +
update), since TRL's step includes its own generation. Both GRPO runs use no KL term
(TRL's default beta = 0), one epoch, clip 0.2, `num_generations` samples per prompt: one
optimizer step per batch, where ours reads pi_old off the update's own forward as TRL does (the
row "scoring pass kept" runs the no-grad pi_old pass before the update, as before that change).
TRL is optional (only this script needs it); without it only our numbers are printed.
Numbers on a shared machine are noisy: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model
from search import Budget
from search.sampling import Sampling
from tasks.countdown import Countdown
from training.grpo import GRPO
from training.sft import SFTConfig, encode_pair, sft


def sft_ours(model, tokenizer, examples, batch: int, **options) -> float:
    """`options`: SFTConfig's `autocast`, `group_by_length`."""
    started = time.perf_counter()
    stats = sft(model, tokenizer, examples, SFTConfig(epochs=1, batch_size=batch, lr=1e-3, **options), seed=0)
    return stats["sft_tokens"] / (time.perf_counter() - started)


def sft_trl(model, tokenizer, examples, batch: int, bf16: bool = False) -> float:
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in examples])
    tokens = sum(len(a) + len(b) for a, b in (encode_pair(tokenizer, p, c) for p, c in examples))
    with tempfile.TemporaryDirectory() as out:
        args = TRLSFTConfig(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-3,
                            report_to="none", save_strategy="no", logging_strategy="no", use_cpu=True,
                            disable_tqdm=True, dataloader_num_workers=0, shuffle_dataset=True, seed=0, bf16=bf16)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        runtime = trainer.train().metrics["train_runtime"]
    return tokens / runtime


def grpo_ours(policy, task, problems, steps: int, generations: int, max_new_tokens: int,
              scoring_pass: bool = False) -> float:
    """`scoring_pass`: keep the no-grad pi_old pass a one-step update skips (the code before
    the skip), for a before/after in the same run."""
    trainer = GRPO(lr=1e-5, kl_coef=0.0, epochs=1, minibatch_size=len(problems) * generations)
    trainer.setup(policy, task)
    if scoring_pass:
        trainer.one_step_update = lambda rollouts: False
    tokens, started = 0, time.perf_counter()
    for step in range(steps):
        results = Sampling(n=generations, batch=generations, max_new_tokens=max_new_tokens, seed=step).search(
            problems, policy, task, Budget())
        tokens += sum(r.tokens for r in results)
        trainer.step(step + 1, results)
    return tokens / (time.perf_counter() - started)


def grpo_trl(model, tokenizer, task, problems, steps: int, generations: int, max_new_tokens: int) -> float:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    by_prompt = {task.prompt(p): p for p in problems}
    counted = {"tokens": 0}

    def reward(prompts, completions, **_):
        counted["tokens"] += sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions)
        return [task.reward(by_prompt[p], c) for p, c in zip(prompts, completions)]

    data = Dataset.from_list([{"prompt": task.prompt(p)} for p in problems] * steps)
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=len(problems) * generations,
                          num_generations=generations, max_completion_length=max_new_tokens, max_steps=steps,
                          learning_rate=1e-5, beta=0.0, num_iterations=1, temperature=1.0, report_to="none",
                          save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
                          shuffle_dataset=False, seed=0)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer)
        runtime = trainer.train().metrics["train_runtime"]
    return counted["tokens"] / runtime


def compare(name: str, ours: float, run_trl) -> None:
    """Print one row as soon as it is measured; a TRL failure is reported, not fatal."""
    theirs, note = None, ""
    if run_trl is not None:
        try:
            theirs = run_trl()
        except Exception as err:  # report exactly why TRL could not run here
            note = f"  (TRL failed: {type(err).__name__}: {str(err)[:120]})"
    ratio = "-" if theirs is None else f"{ours / theirs:.2f}"
    print(f"{name:<40} {ours:>10.0f} {'-' if theirs is None else f'{theirs:.0f}':>10} {ratio:>9}{note}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1m", help="tiny model size (policies.tiny)")
    ap.add_argument("--batch", type=int, default=16, help="SFT batch size (sequences)")
    ap.add_argument("--sft-steps", type=int, default=8, help="SFT optimizer steps timed")
    ap.add_argument("--grpo-steps", type=int, default=2, help="GRPO steps timed (each samples and updates)")
    ap.add_argument("--prompts", type=int, default=4, help="problems per GRPO step")
    ap.add_argument("--generations", type=int, default=4, help="samples per problem (GRPO group size)")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="completion length cap")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import trl
    except ImportError:
        trl = None
        print("TRL is not importable: printing our numbers only (pip install trl to compare)")

    task = Countdown(min_numbers=3, max_numbers=3, number_range=(1, 9), target_range=(2, 40), train_size=400)
    problems = task.problems("train")
    examples = [(task.prompt(p), task.reference_traces(p)[0]) for p in problems[: args.batch * args.sft_steps]]
    base, tokenizer = build_tiny_model(args.size, seed=0)

    def fresh():
        """An untouched copy of the initial model for every run: TRL (accelerate) wraps the
        forward of the model it trains, and that wrapper must not reach the next run."""
        return copy.deepcopy(base)

    sft_ours(fresh(), tokenizer, examples[: args.batch], args.batch)  # warm-up
    print(f"model tiny-{args.size}, torch threads {torch.get_num_threads()}, TRL {trl.__version__ if trl else '-'}")
    print(f"{'workload':<40} {'ours':>10} {'TRL':>10} {'ours/TRL':>9}", flush=True)

    compare("SFT step, group_by_length (ours only)",
            sft_ours(fresh(), tokenizer, examples, args.batch, group_by_length=True), None)
    compare("SFT step (prompt+completion tokens/s)", sft_ours(fresh(), tokenizer, examples, args.batch),
            (lambda: sft_trl(fresh(), tokenizer, examples, args.batch)) if trl else None)
    compare("SFT step, bf16 autocast (TRL bf16=True)",
            sft_ours(fresh(), tokenizer, examples, args.batch, autocast="bfloat16"),
            (lambda: sft_trl(fresh(), tokenizer, examples, args.batch, bf16=True)) if trl else None)

    grpo_problems = problems[-args.prompts :]
    grpo_ours(HFPolicy(fresh(), tokenizer), task, grpo_problems, 1, args.generations, args.max_new_tokens)  # warm-up
    compare("GRPO step, pi_old scoring pass kept", grpo_ours(HFPolicy(fresh(), tokenizer), task, grpo_problems,
                                                              args.grpo_steps, args.generations, args.max_new_tokens,
                                                              scoring_pass=True), None)
    ours = grpo_ours(HFPolicy(fresh(), tokenizer), task, grpo_problems, args.grpo_steps, args.generations,
                     args.max_new_tokens)
    compare("GRPO step (generated tokens/s)", ours,
            (lambda: grpo_trl(fresh(), tokenizer, task, grpo_problems, args.grpo_steps, args.generations,
                              args.max_new_tokens)) if trl else None)


if __name__ == "__main__":
    main()
