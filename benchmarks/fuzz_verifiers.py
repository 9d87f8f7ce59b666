"""Hostile strings through every task's verifiers; counts escaped exceptions (a script, not a test).

    python benchmarks/fuzz_verifiers.py                 # 100 000 strings, ~2 min on one core
    python benchmarks/fuzz_verifiers.py --strings 2000  # a quick look

The strings are the hand corpus of `tests/hostile_text.py` (zero divisors in every
position, unicode digits and minus signs, null bytes, NaN/inf words, huge exponents, deep
nesting, 1 MB and 10 MB lines) followed by random ones assembled from pieces of the tasks'
trace formats (step patterns, `(left: ...)` lists, answer markers, fractions with zero
denominators, unicode digits, long digit runs). Each goes through every function listed in
`tests/hostile_text.verifier_calls` for one problem of every task. Prints the number of
escapes (an exception, or a result of the wrong shape), the first few, and the slowest calls.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_text import PIECES, build_tasks, hand_corpus, mutate, run_all  # noqa: E402


def random_strings(count: int, seed: int, traces: list[str]):
    """`count` random strings: half of them 0-60 format pieces, half a real reference trace
    with 1-4 pieces written over it."""
    rng = random.Random(seed)
    for i in range(count):
        if i % 2:
            yield "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60)))
        else:
            n = rng.randint(1, 4)
            yield mutate(rng.choice(traces), rng.choices(PIECES, k=n), [rng.random() for _ in range(n)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strings", type=int, default=100_000, help="total strings, hand corpus included")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    escapes, slowest, calls = [], [], 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        pairs = build_tasks(Path(folder), per_task=1)
        traces = [t for task, problems in pairs for p in problems for t in task.reference_traces(p)]
        corpus = hand_corpus()
        texts = [*corpus, *random_strings(max(0, args.strings - len(corpus)), args.seed, traces)]
        for task, name, text, seconds, error in run_all(pairs, iter(texts)):
            calls += 1
            if error is not None:
                escapes.append((task, name, text, error))
            if len(slowest) < 5 or seconds > slowest[-1][0]:
                slowest = sorted(slowest + [(seconds, task, name, text)], key=lambda r: -r[0])[:5]
    print(f"strings: {len(texts)}  calls: {calls}  wall: {time.perf_counter() - start:.1f} s")
    print(f"escapes: {len(escapes)}")
    for task, name, text, error in escapes[:10]:
        print(f"  {task}.{name}({text[:60]!r}{'...' if len(text) > 60 else ''}) -> {error!r}"[:200])
    for seconds, task, name, text in slowest:
        print(f"slowest: {seconds * 1000:.1f} ms  {task}.{name}  on a {len(text):,}-char string {text[:30]!r}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
