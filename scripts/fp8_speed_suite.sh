#!/usr/bin/env bash
# The FP8 / search measurements of one H200 in one go (about 8 minutes): FP8 fidelity on the real SmolLM2
# checkpoints, encoding and reranking speed at Llama-2-7B shape (bf16-compiled beside fp8-compiled), and exact
# search over a synthetic 8.8M x 4096 fp16 index (streamed and resident). Each step writes its JSON and log
# into OUT and has its own time limit, so one slow step does not cost the others.
#
#   scripts/fp8_speed_suite.sh OUT SMOLLM2_DIR [IR_DIR]
#
# Relative paths are taken from the repository root. SMOLLM2_DIR: SmolLM2-135M as a safetensors folder (the
# base of the packaged adapters); IR_DIR: the folder holding beir-scifact/ and cranfield/ (default
# ../shared/ir, else shared/ir). Then, in the repository:
#   cp OUT/*.json benchmarks/results/ && python benchmarks/render_readme.py
set -u
cd "$(dirname "$0")/.."
OUT=${1:?usage: fp8_speed_suite.sh OUT SMOLLM2_DIR [IR_DIR]}
BASE=${2:?usage: fp8_speed_suite.sh OUT SMOLLM2_DIR [IR_DIR]}
IR=${3:-../shared/ir}
[ -d "$IR/beir-scifact" ] || IR=shared/ir
PY=${PYTHON:-python3}
mkdir -p "$OUT"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its log, say how it ended
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s"
  grep -v '^\s*$' "$OUT/$name.log" | tail -n 4
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step fp8-fidelity 150 "$PY" benchmarks/fp8_fidelity.py --base "$BASE" \
  --collections "$IR/beir-scifact" "$IR/cranfield" --output "$OUT/fp8-fidelity-h200.json"
step encode-fp8 165 "$PY" benchmarks/encode.py --lengths benchmarks/scifact-lengths.json --models llama2-7b \
  --docs 2048 --budgets 65536 --compile --no-eager --baseline-docs 0 --dtypes bfloat16 fp8 \
  --output "$OUT/encode-fp8-h200.json"
step rerank-fp8 145 "$PY" benchmarks/rerank.py --models llama2-7b --compile --no-eager --naive-batch 0 \
  --batch-tokens 32768 --dtypes bfloat16 fp8 --lengths benchmarks/rerank-scifact-lengths.json \
  --output "$OUT/rerank-fp8-h200.json"
step search 115 "$PY" benchmarks/search.py --output "$OUT/search-h200.json"
ls -la "$OUT"
