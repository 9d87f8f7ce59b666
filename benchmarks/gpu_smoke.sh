#!/usr/bin/env bash
# GPU smoke test: one tiny iteration of the loop on a CUDA GPU, with the HF engine and with
# vLLM, printing the generation rate of each. Not part of the suite (no GPU here); run it by
# hand on a CUDA machine after the install of the README's "GPU machines" section:
#
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 && pip install -e . && pip install vllm
#   bash benchmarks/gpu_smoke.sh
#
# It builds (or loads) the default tiny base on the CPU, then searches, trains and evaluates
# on cuda:0 with policy=hf, and searches with policy=vllm; tokens/s come from each run's
# metrics (generated tokens over the search's wall time).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python - <<'PY'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device: install a CUDA build of torch==2.13.0 first"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
OUT=$(mktemp -d)
BASE="$OUT/base"
python - "$BASE" <<'PY'
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
    cfg = compose("config", overrides=["progress=false"])
instantiate(cfg.policy).save(sys.argv[1])  # the default tiny base as a plain HF folder
PY
COMMON="iterations=1 train_problems=256 eval.problems=100 budget.tokens_per_problem=1024 +equal_spend=sampling progress=false"
python -m training.run policy=hf policy.path="$BASE" policy.device=cuda $COMMON hydra.run.dir="$OUT/hf"
python -m training.evaluate policy=vllm policy.path="$BASE" $COMMON hydra.run.dir="$OUT/vllm"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
train = [json.loads(l) for l in (out / "hf" / "metrics.jsonl").read_text().splitlines() if '"train"' in l][0]
print(f"hf cuda: search {train['search_tokens']:,} tokens, train_time {train['train_time']:.1f} s (search + train)")
vllm = json.loads((out / "vllm" / "metrics.json").read_text())
print(f"vllm: {vllm['tokens'] * vllm['problems']:,.0f} tokens in {vllm['wall_time_s']:.1f} s = "
      f"{vllm['tokens'] * vllm['problems'] / vllm['wall_time_s']:,.0f} tok/s")
PY
