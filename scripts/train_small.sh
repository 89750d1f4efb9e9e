#!/usr/bin/env bash
# Reproduce the small-scale checkpoints: RepLLaMA and RankLLaMA trained from SmolLM2-135M on SciFact *train*.
#
#   1. (CPU, needs pyserini + Java) BM25 top-200 for the train queries (and test) -> $RUNS/bm25.train.trec
#   2. mine BM25 negatives for the train queries                                    -> $RUNS/neg-bm25.jsonl
#   3. RepLLaMA (LoRA) on BM25 negatives + title pseudo-queries (2 epochs)          -> $CKPT/repllama-smollm2
#   4. RankLLaMA (LoRA) on the same data, groups of 8 (1 epoch)                     -> $CKPT/rankllama-smollm2
#   5. (EXTRAS=1) dense negatives from 3, a second round, and its full fine-tuning variant
#   6. evaluation on SciFact test and Cranfield (scripts/evaluate_small.py): dense, BM25+dense RRF, RankLLaMA
#      reranking the fused top 100 -> results/raw/evaluate_small.json (then scripts/collect_results.py)
#
# Steps 2-9 need only torch/transformers/peft (a GPU machine without pyserini, Java or faiss): run step 1 on a
# CPU machine first and bring $RUNS/bm25.{train,test}.trec along. Every step is skipped when its output exists, and the
# trainers resume from their last checkpoint, so rerunning the script after an interruption continues it.
# No step reads test judgments except the final evaluation.
#
# Knobs (environment): PYTHON, COLLECTION (name or BEIR folder), DATA_DIR, BASE (base model name), RUNS, CKPT,
# EPOCHS, BATCH (queries per step), LR, PSEUDO (title|none), ENCODE_LENGTH (passage tokens at
# inference), NPROC (GPUs: torchrun when > 1), TRAIN_ARGS (appended to every trainer call), ALLOW_CPU=1 (run the GPU
# steps on a CPU: a smoke test, e.g. with a tiny BASE and TRAIN_ARGS="--max-steps 2 --dtype float32").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
COLLECTION=${COLLECTION:-beir-scifact}
BASE=${BASE:-smollm2-135m}
RUNS=${RUNS:-runs/small}
CKPT=${CKPT:-checkpoints/small}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-32}
LR=${LR:-2e-4}
PSEUDO=${PSEUDO:-title}
ENCODE_LENGTH=${ENCODE_LENGTH:-512}
NPROC=${NPROC:-1}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -n "${DATA_DIR:-}" ] && export PYSERINI_LLAMA_DATA="$DATA_DIR"
mkdir -p "$RUNS" "$CKPT"

has() { "$PY" -c "import $1" 2>/dev/null; }
step() { echo "== $*" >&2; }
FOLDER=$("$PY" -c "from pyserini_llama.data.collections import resolve_collection as r; print(r('$COLLECTION').root)")
TRAIN_QRELS="$FOLDER/qrels/train.tsv"

# 1. BM25 (CPU machine with pyserini).
if [ ! -f "$RUNS/bm25.train.trec" ]; then
  if has pyserini; then
    step "BM25: train top-200 (negatives), test top-1000 (baseline)"
    "$PY" -m pyserini_llama.bm25 --collection "$FOLDER" --split train --hits 200 --output "$RUNS/bm25.train.trec"
    for c in "$FOLDER" "$(dirname "$FOLDER")/cranfield"; do  # test runs for scripts/evaluate_small.py
      [ -f "$RUNS/$(basename "$c").bm25.trec" ] || "$PY" -m pyserini_llama.bm25 --collection "$c" --split test \
        --hits 1000 --output "$RUNS/$(basename "$c").bm25.trec"
    done
  else
    echo "error: $RUNS/bm25.train.trec is missing and pyserini is not installed here; run this script on a CPU" \
         "machine with pyserini first (it stops after writing the BM25 run when no GPU is present)" >&2
    exit 2
  fi
fi
if [ "${ALLOW_CPU:-0}" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "BM25 run written to $RUNS/bm25.train.trec; no GPU here, so training stops. Rerun on the GPU machine." >&2
  exit 0
fi

launch() {  # a trainer module, data-parallel when NPROC > 1 (same global batch: BATCH / NPROC per GPU)
  local module=$1; shift
  if [ "$NPROC" -gt 1 ]; then
    torchrun --standalone --nproc_per_node "$NPROC" -m "$module" --batch-size $((BATCH / NPROC)) "$@"
  else
    "$PY" -m "$module" --batch-size "$BATCH" "$@"
  fi
}
common=(--collection "$FOLDER" --split train --model "$BASE" --epochs "$EPOCHS" --learning-rate "$LR"
        --save-steps 50 --resume)
pseudo=()
[ "$PSEUDO" != none ] && pseudo=(--pseudo-queries "$PSEUDO")

mine() {  # run -> negatives JSONL (train judgments only)
  [ -f "$2" ] || "$PY" -m pyserini_llama.mine_negatives --run "$1" --qrels "$TRAIN_QRELS" --output "$2" \
    --depth 200 --num 30 --sample random --seed 42
}
# Query sets as TSV topics: train queries for mining negatives, test queries (texts only) for the final runs.
for split in train test; do
  [ -f "$RUNS/topics-$split.tsv" ] || "$PY" -c "
import sys
from pyserini_llama.data.beir import BeirFolder
for qid, text in BeirFolder(sys.argv[1]).queries(sys.argv[2]).items():
    print(f'{qid}\t{text}')" "$FOLDER" "$split" > "$RUNS/topics-$split.tsv"
done
dense_run() {  # checkpoint name split -> $RUNS/<name>.<split>.trec (the corpus index is built once per model)
  local ckpt=$1 name=$2 split=$3
  [ -f "$RUNS/$name.$split.trec" ] && return
  [ -f "indexes/small/$name/docid" ] || "$PY" -m pyserini_llama.encode corpus --corpus "$FOLDER" \
    --encoder "$ckpt" --index "indexes/small/$name" --max-length "$ENCODE_LENGTH"
  "$PY" -m pyserini_llama.search --index "indexes/small/$name" --topics "$RUNS/topics-$split.tsv" \
    --encoder "$ckpt" --hits "$([ "$split" = train ] && echo 200 || echo 1000)" \
    --output "$RUNS/$name.$split.trec" --tag "$name"
}
train() {  # module output extra-args...
  local module=$1 out=$2; shift 2
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of words
  [ -f "$out/pyserini_llama.json" ] || launch "$module" "${common[@]}" --output "$out" "$@" ${TRAIN_ARGS:-}
}

step "mine BM25 negatives";                  mine "$RUNS/bm25.train.trec" "$RUNS/neg-bm25.jsonl"
# The packaged checkpoints (pyserini_llama/checkpoints/): exactly these two commands.
step "RepLLaMA (packaged repllama-smollm2)"; train pyserini_llama.train.repllama "$CKPT/repllama-smollm2" \
                                               --negatives "$RUNS/neg-bm25.jsonl" "${pseudo[@]}"
step "RankLLaMA (packaged rankllama-smollm2)"
[ -f "$CKPT/rankllama-smollm2/pyserini_llama.json" ] || launch pyserini_llama.train.rankllama \
  --collection "$FOLDER" --split train --model "$BASE" --negatives "$RUNS/neg-bm25.jsonl" "${pseudo[@]}" \
  --group-size 8 --epochs 1 --learning-rate 1e-4 --save-steps 50 --resume --output "$CKPT/rankllama-smollm2" \
  ${TRAIN_ARGS:-}
# Further rounds (not yet run at the published scale; EXTRAS=1): dense negatives, full fine-tuning.
if [ "${EXTRAS:-0}" = 1 ]; then
  step "dense negatives from round 1";       dense_run "$CKPT/repllama-smollm2" repllama-smollm2 train
                                             mine "$RUNS/repllama-smollm2.train.trec" "$RUNS/neg-r1.jsonl"
  step "RepLLaMA round 2 (LoRA)";            train pyserini_llama.train.repllama "$CKPT/repllama-r2" \
                                               --negatives "$RUNS/neg-bm25.jsonl,$RUNS/neg-r1.jsonl" "${pseudo[@]}"
  step "RepLLaMA round 2 (full)";            train pyserini_llama.train.repllama "$CKPT/repllama-r2-full" \
                                               --negatives "$RUNS/neg-bm25.jsonl,$RUNS/neg-r1.jsonl" "${pseudo[@]}" \
                                               --full --learning-rate 2e-5
fi

step "evaluation: SciFact test and Cranfield (zero-shot) -> results/raw/evaluate_small.json"
# BM25 test runs named <collection>.bm25.trec (from python -m pyserini_llama.bm25 on the CPU machine)
"$PY" scripts/evaluate_small.py --data-dir "$(dirname "$FOLDER")" --bm25-runs "$RUNS" \
  --dense repllama-smollm2="$CKPT/repllama-smollm2" --rerankers rankllama-smollm2="$CKPT/rankllama-smollm2" \
  --runs "$RUNS/eval" --output "${RESULTS:-results/raw/evaluate_small.json}"
echo "checkpoints in $CKPT, runs in $RUNS" >&2
