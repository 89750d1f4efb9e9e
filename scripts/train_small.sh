#!/usr/bin/env bash
# How the packaged SmolLM2 checkpoints were made (SciFact only). The weak-supervision recipe
# (Debian descriptions, then SciFact; LLaRA adaptation) is scripts/reproduce_small.sh.
#
# Reproduce the small-scale checkpoints: RepLLaMA and RankLLaMA trained from SmolLM2-135M on SciFact *train*.
#
#   1. (CPU, needs pyserini + Java) BM25 top-200 for the train queries (and test) -> $RUNS/bm25.train.trec
#   2. mine BM25 negatives for the train queries                                     -> $RUNS/neg-bm25.jsonl
#   3. round 1: RepLLaMA (LoRA) on BM25 negatives + title pseudo-queries (2 epochs) -> $CKPT/repllama-r1
#   4. dense negatives: round 1's top 200 for the train queries                       -> $RUNS/neg-r1.jsonl
#   5. hold out 10% of the train queries as a development split (scripts/dev_split.py) -> $RUNS/beir-scifact-dev
#   6. round 2 (packaged repllama-smollm2): LoRA on BM25 + dense negatives, train-fit queries + pseudo-queries
#   7. round 2 with full fine-tuning, identical otherwise (the paper's LoRA vs full comparison; FULL=0 skips it)
#   8. RankLLaMA, two variants: groups of 16 whose negatives come from the dense retriever's top 200 (round 1)
#      plus positives of other queries; train-fit queries ($RERANK_EPOCHS epochs), or those + pseudo-queries
#   9. development evaluation on train-dev (held-out train queries): scripts/choose_on_dev.py picks the packaged
#      reranker (rankllama-smollm2) and the full pipeline (RankLLaMA alone over the hybrid top 100, or fused
#      with the hybrid) off these numbers, never off test
#  10. evaluation on SciFact test and Cranfield (scripts/evaluate_small.py): dense, BM25+dense RRF, RankLLaMA
#      reranking the fused top 100 and its fusion with the hybrid -> results/raw/evaluate_small.json
#
# Steps 2-10 need only torch/transformers/peft (a GPU machine without pyserini, Java or faiss): run step 1 on a
# CPU machine first and bring $RUNS/bm25.train.trec and $RUNS/<collection>.bm25.trec along. Every step is
# skipped when its output exists, and the trainers resume from their last checkpoint, so rerunning the script
# after an interruption continues it. With PARALLEL=1 the three trainers of steps 6-8 share the GPU as three
# processes (a 135M model leaves most of an H100 idle). No step reads test judgments except the last.
#
# Knobs (environment): PYTHON, COLLECTION (name or BEIR folder), DATA_DIR, BASE (base model name), RUNS, CKPT,
# EPOCHS, BATCH (queries per step), LR, FULL_LR, RERANK_EPOCHS, PSEUDO (title|none), ENCODE_LENGTH (passage
# tokens at inference), NPROC (GPUs: torchrun when > 1), COMPILE (1: torch.compile the layers), PARALLEL,
# TRAIN_ARGS (appended to every trainer call), ALLOW_CPU=1 (run the GPU steps on a CPU: a smoke test, e.g. with
# a tiny BASE, COMPILE=0 and TRAIN_ARGS="--max-steps 2 --dtype float32"), STOP_AFTER=train (skip evaluation).
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
FULL_LR=${FULL_LR:-2e-5}
RERANK_EPOCHS=${RERANK_EPOCHS:-8}
COMPILE=${COMPILE:-1}
PARALLEL=${PARALLEL:-0}
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
common=(--split train --model "$BASE" --save-steps 25 --resume)
[ "$COMPILE" = 1 ] && common+=(--compile)
pseudo=()
[ "$PSEUDO" != none ] && pseudo=(--pseudo-queries "$PSEUDO")

mine() {  # run -> negatives JSONL (train judgments only)
  [ -f "$2" ] || "$PY" -m pyserini_llama.mine_negatives --run "$1" --qrels "$TRAIN_QRELS" --output "$2" \
    --depth 200 --num 30 --sample random --seed 42
}
# Query sets as TSV topics: train queries for mining negatives.
[ -f "$RUNS/topics-train.tsv" ] || "$PY" -c "
import sys
from pyserini_llama.data.beir import BeirFolder
for qid, text in BeirFolder(sys.argv[1]).queries('train').items():
    print(f'{qid}\t{text}')" "$FOLDER" > "$RUNS/topics-train.tsv"
dense_run() {  # checkpoint name -> $RUNS/<name>.train.trec, the top 200 of every train query
  local ckpt=$1 name=$2
  [ -f "$RUNS/$name.train.trec" ] && return
  [ -f "indexes/small/$name/docid" ] || "$PY" -m pyserini_llama.encode corpus --corpus "$FOLDER" \
    --encoder "$ckpt" --index "indexes/small/$name" --max-length "$ENCODE_LENGTH"
  "$PY" -m pyserini_llama.search --index "indexes/small/$name" --topics "$RUNS/topics-train.tsv" \
    --encoder "$ckpt" --hits 200 --output "$RUNS/$name.train.trec" --tag "$name" --backend torch
}
train() {  # module output extra-args... (one trainer; in the background with PARALLEL=1)
  local module=$1 out=$2; shift 2
  [ -f "$out/pyserini_llama.json" ] && return
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of words
  if [ "$PARALLEL" = 1 ]; then
    launch "$module" "${common[@]}" --output "$out" "$@" ${TRAIN_ARGS:-} --no-progress > "$out.log" 2>&1 &
  else
    launch "$module" "${common[@]}" --output "$out" "$@" ${TRAIN_ARGS:-}
  fi
}

# An interrupted script takes its background trainers with it (they resume on the next run).
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
step "mine BM25 negatives";              mine "$RUNS/bm25.train.trec" "$RUNS/neg-bm25.jsonl"
step "round 1: RepLLaMA on BM25 negatives (all train queries)"
PARALLEL=0 train pyserini_llama.train.repllama "$CKPT/repllama-r1" --collection "$FOLDER" --epochs "$EPOCHS" \
  --learning-rate "$LR" --negatives "$RUNS/neg-bm25.jsonl" "${pseudo[@]}"
step "dense negatives from round 1";     dense_run "$CKPT/repllama-r1" repllama-r1
                                         mine "$RUNS/repllama-r1.train.trec" "$RUNS/neg-r1.jsonl"
DEV=$RUNS/$(basename "$FOLDER")-dev
step "development split";                [ -f "$DEV/qrels/train-dev.tsv" ] || "$PY" scripts/dev_split.py \
                                           --collection "$FOLDER" --output "$DEV"
round2=(--collection "$DEV" --split train-fit --epochs "$EPOCHS" --negatives "$RUNS/neg-bm25.jsonl,$RUNS/neg-r1.jsonl"
        "${pseudo[@]}")
step "round 2 (packaged repllama-smollm2): LoRA"
train pyserini_llama.train.repllama "$CKPT/repllama-smollm2" "${round2[@]}" --learning-rate "$LR"
[ "${FULL:-1}" = 1 ] && step "round 2: full fine-tuning" && train pyserini_llama.train.repllama "$CKPT/repllama-smollm2-full" \
                                           "${round2[@]}" --full --learning-rate "$FULL_LR"
# RankLLaMA: the paper's groups of 16 with negatives from the dense retriever's top 200, plus 4 positives of
# other queries per group (a pointwise scorer trained on few queries otherwise learns which documents are
# positives, whatever the query). Two variants; the development split picks the packaged one (step 9).
rerank=(--collection "$DEV" --split train-fit --negatives "$RUNS/neg-r1.jsonl" --group-size 16 --other-positives 4
        --learning-rate 1e-4)
step "RankLLaMA on train queries ($RERANK_EPOCHS epochs)"
train pyserini_llama.train.rankllama "$CKPT/rankllama-queries" "${rerank[@]}" --epochs "$RERANK_EPOCHS"
step "RankLLaMA on train queries + pseudo-queries (1 epoch)"
train pyserini_llama.train.rankllama "$CKPT/rankllama-pseudo" "${rerank[@]}" --epochs 1 "${pseudo[@]}"
if [ "$PARALLEL" = 1 ]; then
  failed=0
  for job in $(jobs -p); do wait "$job" || failed=1; done
  tail -n 3 "$CKPT"/*.log >&2 || true
  [ "$failed" = 0 ] || { echo "error: a trainer failed (logs: $CKPT/*.log)" >&2; exit 1; }
fi
[ "${STOP_AFTER:-}" = train ] && exit 0

evaluate() {  # split output data-dir rerankers collections...
  local split=$1 output=$2 data=$3 rerankers=$4; shift 4
  # shellcheck disable=SC2086  # rerankers is a list of NAME=CHECKPOINT words
  "$PY" scripts/evaluate_small.py --data-dir "$data" --collections "$@" --split "$split" --bm25-runs "$RUNS" \
    --dense repllama-smollm2="$CKPT/repllama-smollm2" $DENSE_EXTRA --rerankers $rerankers \
    --runs "$RUNS/eval" --output "$output" --overwrite
}
DENSE_EXTRA="repllama-r1=$CKPT/repllama-r1"
[ -f "$CKPT/repllama-smollm2-full/pyserini_llama.json" ] && DENSE_EXTRA+=" repllama-smollm2-full=$CKPT/repllama-smollm2-full"
variants="rankllama-queries=$CKPT/rankllama-queries rankllama-pseudo=$CKPT/rankllama-pseudo"
step "development evaluation: held-out train queries -> ${DEV_RESULTS:=results/raw/dev_small.json}"
ln -sf bm25.train.trec "$RUNS/$(basename "$DEV").bm25.trec"  # the train BM25 run covers the dev queries
evaluate train-dev "$DEV_RESULTS" "$(dirname "$DEV")" "$variants" "$(basename "$DEV")"
step "choose the packaged reranker and the full pipeline on the development split"
"$PY" scripts/choose_on_dev.py --dev "$DEV_RESULTS" --collection "$(basename "$DEV")" \
  --rerankers rankllama-queries rankllama-pseudo --checkpoints "$CKPT" --link rankllama-smollm2 \
  --output "${CHOICE:-results/raw/dev_choice.json}"
step "evaluation: SciFact test and Cranfield (zero-shot) -> ${RESULTS:=results/raw/evaluate_small.json}"
# BM25 test runs named <collection>.bm25.trec (from python -m pyserini_llama.bm25 on the CPU machine)
evaluate test "$RESULTS" "$(dirname "$FOLDER")" "rankllama-smollm2=$CKPT/rankllama-smollm2 $variants" \
  "$(basename "$FOLDER")" cranfield
echo "checkpoints in $CKPT, runs in $RUNS" >&2
