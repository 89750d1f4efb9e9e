#!/usr/bin/env bash
# LLaRA ablation: does unsupervised EBAE+EBAR adaptation on corpus text help a RepLLaMA fine-tune?
#
#   scripts/llara_ablation.sh MODEL DATA_DIR WORK_DIR [RESULTS_JSON]
#
# MODEL     base model folder or name (e.g. smollm2-135m or a converted SmolLM2-135M folder)
# DATA_DIR  folder holding beir-scifact/ and cranfield/ (BEIR layout: corpus.jsonl, queries.jsonl, qrels/)
# WORK_DIR  where checkpoints, indexes and runs go (reruns resume / skip finished steps)
# RESULTS   results JSON to write (default: WORK_DIR/llara_ablation.json)
#
# 1. adapt MODEL with LLaRA on the SciFact + Cranfield *corpus text only* (no queries, no judgments);
# 2. fine-tune MODEL and the adapted model with the RepLLaMA trainer, identical arguments
#    (REPLLAMA_ARGS, default: the trainer's defaults, SciFact train split);
# 3. encode, search and evaluate both on SciFact test and Cranfield.
# Needs no pyserini, Java or faiss. Environment knobs: LLARA_STEPS (2500), LLARA_BATCH (32), LLARA_LR (5e-5),
# LLARA_FORMAT (released), REPLLAMA_ARGS, DEVICE (cuda).
set -euo pipefail
MODEL=${1:?model}; DATA=${2:?data dir}; WORK=${3:?work dir}; RESULTS=${4:-$WORK/llara_ablation.json}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
REPLLAMA_ARGS=${REPLLAMA_ARGS:-}
mkdir -p "$WORK/runs" "$WORK/eval"

finished() { [ -f "$1/pyserini_llama.json" ]; }

# 1. LLaRA adaptation (full-parameter, bf16; a few GPU minutes at 135M).
ADAPTED=$WORK/llara-adapted
finished "$ADAPTED" || $PY -m pyserini_llama.train.llara --model "$MODEL" \
  --corpus "$DATA/beir-scifact" "$DATA/cranfield" --output "$ADAPTED" --format "${LLARA_FORMAT:-released}" \
  --max-steps "${LLARA_STEPS:-2500}" --batch-size "${LLARA_BATCH:-32}" --learning-rate "${LLARA_LR:-5e-5}" \
  --max-length 128 --chunk-words 64 --warmup-steps 250 --save-steps 500 --device "$DEVICE" --resume

# 2. The same RepLLaMA fine-tune from both starting points.
for variant in base adapted; do
  start=$MODEL; [ "$variant" = adapted ] && start=$ADAPTED
  out=$WORK/repllama-$variant
  # shellcheck disable=SC2086
  finished "$out" || $PY -m pyserini_llama.train.repllama --model "$start" --collection "$DATA/beir-scifact" \
    --split train --output "$out" --device "$DEVICE" --resume $REPLLAMA_ARGS
done

# 3. Dense retrieval and evaluation on SciFact test and Cranfield.
for variant in base adapted; do
  for collection in beir-scifact cranfield; do
    index=$WORK/indexes/$collection-$variant
    run=$WORK/runs/$collection-$variant.trec
    [ -f "$index/index" ] || $PY -m pyserini_llama.encode corpus --corpus "$DATA/$collection" \
      --encoder "$WORK/repllama-$variant" --index "$index" --max-length 512 --device "$DEVICE"
    [ -f "$run" ] || $PY -m pyserini_llama.search --index "$index" --topics "$DATA/$collection" \
      --encoder "$WORK/repllama-$variant" --output "$run" --hits 1000 --backend torch --device "$DEVICE"
    $PY -m pyserini_llama.eval --run "$run" --collection "$DATA/$collection" --split test --json \
      > "$WORK/eval/$collection-$variant.json"
  done
done

$PY - "$WORK" "$RESULTS" "$MODEL" <<'EOF'
import json, sys
from pathlib import Path
work, results, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
state = json.loads((work / "llara-adapted" / "trainer_state.json").read_text())
losses = [loss for _, loss in state["loss_history"]]
out = {"model": model, "adaptation": {"steps": state["step"], "train_seconds": state["train_seconds"],
                                      "loss_first": losses[0], "loss_last": losses[-1],
                                      "config": json.loads((work / "llara-adapted" / "pyserini_llama.json").read_text())["extra"]},
       "results": {f.stem: json.loads(f.read_text()) for f in sorted((work / "eval").glob("*.json"))}}
tmp = results.with_suffix(".tmp")
tmp.write_text(json.dumps(out, indent=2) + "\n")
tmp.replace(results)
print(json.dumps(out["results"], indent=2))
EOF
