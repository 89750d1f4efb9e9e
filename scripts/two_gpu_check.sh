#!/usr/bin/env bash
# One GPU vs two with the same global batch: the same loss curve (within noise), and the throughput of each.
#
#   scripts/two_gpu_check.sh MODEL COLLECTION NEGATIVES WORK [RESULTS_JSON]
#
# Three RepLLaMA LoRA runs from the same starting weights on the same data (COLLECTION's train split,
# NEGATIVES from python -m pyserini_llama.mine_negatives), global batch $BATCH queries, $STEPS steps:
#   one-gpu        1 process, batch BATCH, seed 42
#   one-gpu-seed43 1 process, batch BATCH, seed 43: the noise reference (other negatives sampled, other dropout)
#   two-gpu        torchrun --nproc_per_node 2, batch BATCH/2 per GPU, seed 42
# The first two run side by side (GPU 0 and GPU 1), then the two-GPU run. scripts/compare_loss_curves.py
# then writes RESULTS_JSON: per-step losses, their differences, tokens/s of each run.
# Knobs: PYTHON, BATCH (32), STEPS (60), TRAIN_ARGS (e.g. --compile).
set -euo pipefail
MODEL=${1:?model}; COLLECTION=${2:?collection}; NEG=${3:?negatives}; WORK=${4:?work dir}
RESULTS=${5:-$WORK/two_gpu.json}
PY=${PYTHON:-python}
BATCH=${BATCH:-32}; STEPS=${STEPS:-60}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK"
args=(--model "$MODEL" --collection "$COLLECTION" --split train --negatives "$NEG" --max-steps "$STEPS"
      --warmup-steps 10 --learning-rate 2e-4 --save-steps 0 --no-progress)
finished() { [ -f "$1/pyserini_llama.json" ]; }
side_by_side() {  # name gpu seed: one single-GPU run in the background, its pid in $!
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of words
  CUDA_VISIBLE_DEVICES=$2 "$PY" -m pyserini_llama.train.repllama "${args[@]}" --batch-size "$BATCH" --seed "$3" \
    --output "$WORK/$1" --overwrite ${TRAIN_ARGS:-} > "$WORK/$1.log" 2>&1 &
}
pids=()
finished "$WORK/one-gpu" || { side_by_side one-gpu 0 42; pids+=($!); }
finished "$WORK/one-gpu-seed43" || { side_by_side one-gpu-seed43 1 43; pids+=($!); }
for pid in "${pids[@]}"; do wait "$pid" || { tail -n 20 "$WORK"/one-gpu*.log >&2; exit 1; }; done
# shellcheck disable=SC2086
finished "$WORK/two-gpu" || "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
  -m pyserini_llama.train.repllama "${args[@]}" --batch-size $((BATCH / 2)) --seed 42 --output "$WORK/two-gpu" \
  --overwrite ${TRAIN_ARGS:-} > "$WORK/two-gpu.log" 2>&1 || { tail -n 30 "$WORK/two-gpu.log" >&2; exit 1; }
"$PY" scripts/compare_loss_curves.py --reference "$WORK/one-gpu" --candidate "$WORK/two-gpu" \
  --noise "$WORK/one-gpu-seed43" --output "$RESULTS"
