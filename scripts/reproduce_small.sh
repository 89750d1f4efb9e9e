#!/usr/bin/env bash
# Reproduce the small-scale recipe from scratch: weak supervision on Debian descriptions, then SciFact.
#
#   scripts/reproduce_small.sh cpu   # a machine with Java (Pyserini): BM25 negatives and BM25 runs -> $CARRY
#   scripts/reproduce_small.sh gpu   # one GPU (no Java, no faiss needed): training, dense negatives, evaluation
#                                    # (one H200: about 26 minutes, results/raw/experiments/eos/im_start/one_gpu_time.json)
#
# CPU part (writes only small gzipped files under $CARRY, the folder to bring to the GPU machine):
#   c1. SciFact development split: 10% of the train queries held out (scripts/dev_split.py) -> $WORK/beir-scifact-dev
#   c2. BM25 negatives, SciFact train-fit queries (top 200, 30 per query)        -> $CARRY/scifact.bm25.negatives
#   c3. BM25 negatives, $DEBIAN_QUERIES Debian train queries (the trainers' --max-queries subsample), near
#       duplicates of the positive excluded (mine_negatives --exclude-near-duplicates) -> $CARRY/debian.bm25.*
#   c4. BM25 runs for evaluation (no judgment read): SciFact test, Cranfield test, SciFact train-dev, Debian dev
#       -> $CARRY/bm25/
# GPU part (each step timed; skipped when its output exists; trainers resume, so rerunning continues):
#   g1. RepLLaMA on Debian (weak supervision, BM25 negatives)                     -> $CKPT/repllama-debian
#   g2. LLaRA adaptation of the base model on corpus text only: Debian + SciFact + Cranfield corpora
#                                                                                  -> $CKPT/llara-adapted
#   g3. dense negatives from g1: SciFact train-fit and the Debian reranker queries (near duplicates excluded)
#   g4. RepLLaMA fine-tune on SciFact train-fit from g1 (BM25 + dense negatives; with SCIFACT_PSEUDO=title also
#       each corpus title -> its abstract)                                        -> $CKPT/repllama-scifact
#   g5. RankLLaMA on Debian from g1's weights ($RERANK_INIT), dense negatives     -> $CKPT/rankllama-debian
#   g6. the LLaRA arm: g1 and g4 again, identical, from g2's adapted model         -> $CKPT/repllama-llara-*
#   g7. RankLLaMA fine-tune on SciFact train-fit from g5 (dense negatives, positives of other queries; title
#       pseudo-queries as g4)
#                                                                                  -> $CKPT/rankllama-scifact
#   g8. development: SciFact train-dev (held-out train queries) for every model; scripts/choose_on_dev.py picks
#       the packaged reranker and whether the full pipeline fuses it with its input; Debian dev (dense models)
#   g8. packaging: each chosen chain flattened into one adapter of rank $PACKAGE_RANK   -> $PACKAGE/*-smollm2
#   g9. test, read once: SciFact test and Cranfield (zero-shot), the packaged models first
#                                                                                  -> $RESULTS/evaluate_small.json
# Results land in $RESULTS (default $WORK/results, not results/raw: a step is skipped when its output exists, and
# results/raw holds the committed files of an earlier run); copy them to results/raw/ and run
# scripts/collect_results.py.
# With PARALLEL=1 the independent steps of a phase run at once (g1+g2, then g4+g5+g6a, then g6b+g7, then the two
# development evaluations): a 135M model leaves most of an H200 idle, and one process compiles while another
# computes. GPUS="0 1" deals a phase's steps to those devices in turn (CUDA_VISIBLE_DEVICES), so a machine
# with two GPUs runs two trainers without sharing one (PARALLEL=1 on one GPU: its memory must hold
# two trainers at once, about 120 GiB). Step times go to $WORK/timings.tsv and $RESULTS/reproduce_timings.json; a
# step is timed when it finishes, so a step cut short and resumed records only the part after the resume: for the
# script's time, let one run go to the end.
#
# Knobs (environment): PYTHON, DATA_DIR (collections: beir-scifact, cranfield, debian-descriptions), WORK, CARRY,
# CKPT, RESULTS, PACKAGE, PACKAGE_RANK, BASE, EOS (the pooled token), DEBIAN_QUERIES, RERANK_QUERIES, WEAK_BATCH, WEAK_LR, GROUP,
# BUCKET (tokens per bucketed chunk), SCIFACT_EPOCHS, SCIFACT_PSEUDO (none|title), RERANK_EPOCHS, OTHER_POSITIVES,
# LLARA_STEPS, LLARA_BATCH, LLARA_LR, RERANK_INIT (dense|base|llara), COMPILE (1: torch.compile every
# trainer), PARALLEL, GPUS, DEVICE, TRAIN_ARGS (appended to every trainer), SMOKE=1 (tiny settings for a CPU run on
# a tiny BASE: the tests' smoke run). A step is skipped when its output exists, whatever the knobs: run changed
# knobs in a new WORK (or copy the steps to keep into it).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:?usage: scripts/reproduce_small.sh cpu|gpu}
PY=${PYTHON:-python}
DATA=${DATA_DIR:-../shared/ir}
WORK=${WORK:-runs/reproduce}
CARRY=${CARRY:-$WORK/carry}
CKPT=${CKPT:-$WORK/checkpoints}
RESULTS=${RESULTS:-$WORK/results}  # copy to results/raw/ and run scripts/collect_results.py
PACKAGE=${PACKAGE:-$WORK/package}  # the checkpoints to ship: copy to pyserini_llama/checkpoints/
BASE=${BASE:-smollm2-135m}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then  # a CPU run of every step on a tiny model: the script's logic, not its numbers
  : "${DEBIAN_QUERIES:=8}" "${RERANK_QUERIES:=8}" "${WEAK_BATCH:=4}" "${GROUP:=4}" "${BUCKET:=64}"
  : "${SCIFACT_EPOCHS:=1}" "${RERANK_EPOCHS:=1}" "${LLARA_STEPS:=2}" "${LLARA_BATCH:=4}" "${COMPILE:=0}"
  : "${DEVICE:=cpu}" "${SCIFACT_BATCH:=2}" "${HITS:=20}" "${RERANK_DEPTH:=5}" "${OTHER_POSITIVES:=1}"
  : "${TRAIN_ARGS:=--dtype float32 --max-steps 2 --query-max-length 16 --passage-max-length 32 --warmup-steps 0}"
  : "${LLARA_ARGS:=--dtype float32 --max-length 160}" "${EOS=}"
fi
DEBIAN_QUERIES=${DEBIAN_QUERIES:-10000}   # weak RepLLaMA queries (g1 on an H200: 209 s with these trainers,
                                          # results/raw/experiments/scifact-pseudo-title/timings.tsv; 389 s before)
RERANK_QUERIES=${RERANK_QUERIES:-8000}    # weak RankLLaMA queries (a subsample of the same ids: --max-queries)
WEAK_BATCH=${WEAK_BATCH:-32}
WEAK_LR=${WEAK_LR:-2e-4}
GROUP=${GROUP:-16}
BUCKET=${BUCKET:-65536}  # few large chunks: a 135M step is bound by kernel launches (benchmarks/train.py)
SCIFACT_BATCH=${SCIFACT_BATCH:-32}
SCIFACT_EPOCHS=${SCIFACT_EPOCHS:-2}
RERANK_EPOCHS=${RERANK_EPOCHS:-2}
SCIFACT_PSEUDO=${SCIFACT_PSEUDO:-none}  # title: the SciFact fine-tunes add title -> abstract pseudo-queries (lower on
                                        # train-dev with 1 epoch: results/raw/experiments/scifact-pseudo-title)
OTHER_POSITIVES=${OTHER_POSITIVES:-4}  # per group of 16: positives of other queries as negatives (see docs/training.md)
LLARA_STEPS=${LLARA_STEPS:-250}
LLARA_BATCH=${LLARA_BATCH:-48}
LLARA_LR=${LLARA_LR:-5e-5}
LLARA_ARGS=${LLARA_ARGS:-}
RERANK_INIT=${RERANK_INIT:-dense}
PACKAGE_RANK=${PACKAGE_RANK:-32}
# the token every trainer ends its rows with (RepLLaMA pools it): the one the packaged checkpoints were trained with.
# Which entry SmolLM2's tokenizer calls EOS depends on the transformers release (results/NOTES.md); empty: its own
EOS=${EOS-<|im_start|>}
COMPILE=${COMPILE:-1}
PARALLEL=${PARALLEL:-0}
read -r -a GPU_LIST <<< "${GPUS:-}"
DEVICE=${DEVICE:-auto}
HITS=${HITS:-200}
RERANK_DEPTH=${RERANK_DEPTH:-100}
TRAIN_ARGS=${TRAIN_ARGS:-}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK" "$CARRY/bm25" "$CKPT" "$RESULTS"
TIMINGS=$WORK/timings.tsv
DEV=$WORK/beir-scifact-dev

log() { echo "== $*" >&2; }
# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists; record its wall time
step() {
  local name=$1 output=$2; shift 2
  if [ -e "$output" ]; then log "$name: done ($output)"; return 0; fi
  log "$name"
  local t0=$SECONDS
  "$@"
  printf '%s\t%s\t%s\n' "$PART" "$name" "$((SECONDS - t0))" >> "$TIMINGS"
  log "$name: $((SECONDS - t0)) s"
}
# in_phase NAME OUTPUT COMMAND...: a step, in the background when PARALLEL=1 (finish_phase waits)
PIDS=()
LOGS=()
in_phase() {
  if [ "$PARALLEL" = 1 ]; then
    # appended: a rerun (resuming, or skipping what is done) keeps the log of the run that did the work
    if [ "${#GPU_LIST[@]}" -gt 0 ]; then
      CUDA_VISIBLE_DEVICES=${GPU_LIST[$((${#PIDS[@]} % ${#GPU_LIST[@]}))]} step "$@" >> "$WORK/$1.log" 2>&1 &
    else
      step "$@" >> "$WORK/$1.log" 2>&1 &
    fi
    PIDS+=($!)
    LOGS+=("$WORK/$1.log")
  else
    step "$@"
  fi
}
finish_phase() {
  local failed=0 i
  for i in "${!PIDS[@]}"; do
    if ! wait "${PIDS[$i]}"; then
      failed=1
      echo "error: step failed; the end of ${LOGS[$i]}:" >&2
      tail -n 15 "${LOGS[$i]}" >&2
    fi
  done
  PIDS=()
  LOGS=()
  [ "$failed" = 0 ] || exit 1
}
trap 'for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done' EXIT
dev_split() { [ -f "$DEV/qrels/train-dev.tsv" ] || "$PY" scripts/dev_split.py --collection "$DATA/beir-scifact" --output "$DEV"; }

if [ "$PART" = cpu ]; then
  dev_split
  mine=("$PY" scripts/mine_small.py --retriever bm25 --depth "$HITS" --num 30 --work "$WORK/mine")
  step "c2 BM25 negatives, SciFact train-fit" "$CARRY/scifact.bm25.negatives.jsonl.gz" \
    "${mine[@]}" --collection "$DEV" --split train-fit --output "$CARRY/scifact.bm25.negatives.jsonl.gz"
  step "c3 BM25 negatives, Debian train ($DEBIAN_QUERIES queries)" "$CARRY/debian.bm25.negatives.jsonl.gz" \
    "${mine[@]}" --collection "$DATA/debian-descriptions" --split train --max-queries "$DEBIAN_QUERIES" \
    --exclude-near-duplicates --stats "$RESULTS/debian.bm25.mining.json" \
    --output "$CARRY/debian.bm25.negatives.jsonl.gz"
  bm25_run() {  # folder split hits name: a gzipped BM25 run under $CARRY/bm25 (no judgment is read here)
    local out=$CARRY/bm25/$4.$2.bm25.trec
    [ -f "$out.gz" ] && return
    "$PY" - "$1" "$2" "$3" "$out" "$WORK/bm25" <<'PYTHON'
import sys
from pathlib import Path
from pyserini_llama import stages
from pyserini_llama.data.beir import BeirFolder
from pyserini_llama.data.trec import write_run
folder, split, hits, out, work = BeirFolder(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
stage = stages.bm25_stage(stages.StageCache(Path(work)), folder.corpus_path, folder.queries(split), k=hits)
write_run(stage.run, out, tag="bm25")
print(f"{out}: {len(stage.run)} queries, {stage.seconds:.0f}s", file=sys.stderr)
PYTHON
    gzip -9 -n "$out"
  }
  bm25_runs() {
    bm25_run "$DATA/beir-scifact" test 1000 beir-scifact
    bm25_run "$DATA/cranfield" test 1000 cranfield
    bm25_run "$DEV" train-dev 1000 beir-scifact-dev
    bm25_run "$DATA/debian-descriptions" dev 100 debian-descriptions
    touch "$CARRY/bm25/.complete"
  }
  step "c4 BM25 runs for evaluation" "$CARRY/bm25/.complete" bm25_runs
  du -sh "$CARRY" >&2
  log "CPU part done: bring $CARRY to the GPU machine and run: scripts/reproduce_small.sh gpu"
  exit 0
fi
[ "$PART" = gpu ] || { echo "error: unknown part '$PART' (cpu or gpu)" >&2; exit 2; }
for f in scifact.bm25.negatives.jsonl.gz debian.bm25.negatives.jsonl.gz bm25/.complete; do
  [ -e "$CARRY/$f" ] || { echo "error: $CARRY/$f is missing: run 'scripts/reproduce_small.sh cpu' first" >&2; exit 2; }
done
dev_split

# shellcheck disable=SC2086  # TRAIN_ARGS and LLARA_ARGS are lists of words
train() {  # module output args...: one trainer, resumable
  local module=$1 out=$2; shift 2
  "$PY" -m "pyserini_llama.train.$module" --output "$out" --device "$DEVICE" --save-steps 50 --resume \
    --no-progress "${eos[@]}" "$@" $TRAIN_ARGS
}
eos=()
[ -n "$EOS" ] && eos=(--eos-token "$EOS")
fast=(--no-gradient-checkpointing --bucket-tokens "$BUCKET")  # every trainer: a 135M model leaves memory to spare
[ "$COMPILE" = 1 ] && fast+=(--compile)
weak=(--collection "$DATA/debian-descriptions" --split train --max-queries "$DEBIAN_QUERIES" --epochs 1
      --negatives "$CARRY/debian.bm25.negatives.jsonl.gz" --group-size "$GROUP" --batch-size "$WEAK_BATCH"
      --learning-rate "$WEAK_LR" --warmup-steps 20 "${fast[@]}")
pseudo=()
[ "$SCIFACT_PSEUDO" != none ] && pseudo=(--pseudo-queries "$SCIFACT_PSEUDO")
scifact() {  # the SciFact fine-tune of a dense model trained on Debian (identical for both arms)
  train repllama "$2" --model "$1" --collection "$DEV" --split train-fit --epochs "$SCIFACT_EPOCHS" "${pseudo[@]}" \
    --negatives "$CARRY/scifact.bm25.negatives.jsonl.gz,$WORK/scifact.dense.negatives.jsonl.gz" \
    --group-size "$GROUP" --batch-size "$SCIFACT_BATCH" --learning-rate 1e-4 --warmup-steps 5 "${fast[@]}"
}
done_model() { echo "$1/pyserini_llama.json"; }

# phase 1: weak RepLLaMA and LLaRA adaptation (independent)
in_phase g1-repllama-debian "$(done_model "$CKPT/repllama-debian")" train repllama "$CKPT/repllama-debian" \
  --model "$BASE" "${weak[@]}"
# shellcheck disable=SC2086
in_phase g2-llara-adaptation "$(done_model "$CKPT/llara-adapted")" "$PY" -m pyserini_llama.train.llara \
  --model "$BASE" --corpus "$DATA/debian-descriptions" "$DATA/beir-scifact" "$DATA/cranfield" \
  --output "$CKPT/llara-adapted" --device "$DEVICE" --max-steps "$LLARA_STEPS" --batch-size "$LLARA_BATCH" \
  --learning-rate "$LLARA_LR" --warmup-steps 25 --max-length 128 --chunk-words 64 --no-gradient-checkpointing \
  --save-steps 100 --resume --no-progress "${eos[@]}" $LLARA_ARGS
finish_phase

# phase 2: dense negatives from the weak model (the papers: hard negatives from the dense retriever's top 200)
mine=("$PY" scripts/mine_small.py --retriever "$CKPT/repllama-debian" --depth "$HITS" --num 30 --device "$DEVICE"
      --work "$WORK/mine")
step g3-dense-negatives-scifact "$WORK/scifact.dense.negatives.jsonl.gz" "${mine[@]}" --collection "$DEV" \
  --split train-fit --output "$WORK/scifact.dense.negatives.jsonl.gz"
step g3-dense-negatives-debian "$WORK/debian.dense.negatives.jsonl.gz" "${mine[@]}" \
  --collection "$DATA/debian-descriptions" --split train --max-queries "$RERANK_QUERIES" --exclude-near-duplicates \
  --stats "$RESULTS/debian.dense.mining.json" --output "$WORK/debian.dense.negatives.jsonl.gz"

# phase 3: the SciFact fine-tune, the weak reranker, the LLaRA arm's weak stage
case "$RERANK_INIT" in
  dense) rerank_init=$CKPT/repllama-debian ;;
  llara) rerank_init=$CKPT/llara-adapted ;;
  base) rerank_init=$BASE ;;
  *) echo "error: RERANK_INIT must be dense, llara or base" >&2; exit 2 ;;
esac
# with GPUS="0 1": g5 and g6a (Debian's short rows) share the first device, g4 (SciFact's long rows) has the second
in_phase g5-rankllama-debian "$(done_model "$CKPT/rankllama-debian")" train rankllama "$CKPT/rankllama-debian" \
  --model "$rerank_init" --collection "$DATA/debian-descriptions" --split train --max-queries "$RERANK_QUERIES" \
  --epochs 1 --negatives "$WORK/debian.dense.negatives.jsonl.gz" --group-size "$GROUP" \
  --batch-size "$WEAK_BATCH" --learning-rate 1e-4 --warmup-steps 20 "${fast[@]}"
in_phase g4-repllama-scifact "$(done_model "$CKPT/repllama-scifact")" \
  scifact "$CKPT/repllama-debian" "$CKPT/repllama-scifact"
in_phase g6a-repllama-llara-debian "$(done_model "$CKPT/repllama-llara-debian")" \
  train repllama "$CKPT/repllama-llara-debian" --model "$CKPT/llara-adapted" "${weak[@]}"
finish_phase

# phase 4: the reranker's SciFact fine-tune and the LLaRA arm's
in_phase g6b-repllama-llara-scifact "$(done_model "$CKPT/repllama-llara-scifact")" \
  scifact "$CKPT/repllama-llara-debian" "$CKPT/repllama-llara-scifact"
in_phase g7-rankllama-scifact "$(done_model "$CKPT/rankllama-scifact")" train rankllama "$CKPT/rankllama-scifact" \
  --model "$CKPT/rankllama-debian" --collection "$DEV" --split train-fit --epochs "$RERANK_EPOCHS" "${pseudo[@]}" \
  --negatives "$WORK/scifact.dense.negatives.jsonl.gz" --group-size "$GROUP" --other-positives "$OTHER_POSITIVES" \
  --batch-size "$SCIFACT_BATCH" --learning-rate 1e-4 --warmup-steps 5 "${fast[@]}"
finish_phase

# evaluation: choices on development splits only, then test once
evaluate() {  # output data-dir collections... -- extra args; each output its own runs folder (they run at once)
  local output=$1 data=$2; shift 2
  "$PY" scripts/evaluate_small.py --data-dir "$data" --bm25-runs "$CARRY/bm25" --runs "$WORK/eval/$(basename "$output" .json)" \
    --device "$DEVICE" --rerank-depth "$RERANK_DEPTH" --overwrite --output "$output" "$@"
}
dense=(--dense "repllama-scifact=$CKPT/repllama-scifact" "repllama-llara-scifact=$CKPT/repllama-llara-scifact"
       "repllama-debian=$CKPT/repllama-debian" "repllama-llara-debian=$CKPT/repllama-llara-debian")
in_phase g8-dev-scifact "$RESULTS/dev_small.json" evaluate "$RESULTS/dev_small.json" "$WORK" \
  --collections beir-scifact-dev:train-dev "${dense[@]}" \
  --rerankers "rankllama-scifact=$CKPT/rankllama-scifact" "rankllama-debian=$CKPT/rankllama-debian"
in_phase g8-dev-debian "$RESULTS/debian_dev.json" evaluate "$RESULTS/debian_dev.json" "$DATA" \
  --collections debian-descriptions:dev --dense "repllama-debian=$CKPT/repllama-debian" \
  "repllama-llara-debian=$CKPT/repllama-llara-debian"
finish_phase
step g8-choose "$RESULTS/dev_choice.json" "$PY" scripts/choose_on_dev.py --dev "$RESULTS/dev_small.json" \
  --collection beir-scifact-dev --rerankers rankllama-scifact rankllama-debian --checkpoints "$CKPT" \
  --link rankllama-smollm2 --output "$RESULTS/dev_choice.json"
# the checkpoints to ship: each chain (e.g. SciFact fine-tune -> Debian model -> base) as one adapter of rank
# $PACKAGE_RANK (train/flatten.py; SVD, its relative error in $RESULTS/flatten.*.json), the size of one trained adapter
package() {  # chain output
  local report
  report=$RESULTS/flatten.$(basename "$2").json
  "$PY" -m pyserini_llama.train.flatten --checkpoint "$1" --output "$2" --rank "$PACKAGE_RANK" > "$report.tmp"
  mv "$report.tmp" "$report"  # a flatten cut short leaves no report that looks complete
}
step g8-package-repllama "$PACKAGE/repllama-smollm2" package "$CKPT/repllama-scifact" "$PACKAGE/repllama-smollm2"
step g8-package-rankllama "$PACKAGE/rankllama-smollm2" package "$CKPT/rankllama-smollm2" "$PACKAGE/rankllama-smollm2"
# test, read once: what ships (first dense model: fused and reranked), the chains it was flattened from, the
# Debian-only and LLaRA arms
step g9-test "$RESULTS/evaluate_small.json" evaluate "$RESULTS/evaluate_small.json" "$DATA" --split test \
  --collections beir-scifact cranfield --dense "repllama-smollm2=$PACKAGE/repllama-smollm2" "${dense[@]:1}" \
  --rerankers "rankllama-smollm2=$PACKAGE/rankllama-smollm2" "rankllama-chain=$CKPT/rankllama-smollm2"

"$PY" scripts/step_times.py --timings "$TIMINGS" --output "$RESULTS/reproduce_timings.json"
log "done: checkpoints in $CKPT, results in $RESULTS"
