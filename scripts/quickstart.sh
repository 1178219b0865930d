#!/usr/bin/env bash
# The whole llara pipeline on the embedded default model (smollm2-135m), CPU only, no network:
#   [adapt briefly] -> encode corpus -> index -> search (dense + BM25) -> fuse -> evaluate against BM25.
# Data: $DATA (any BEIR-layout directory), else a known-item collection built from Python's own docstrings.
set -euo pipefail

OUT=${QUICKSTART_OUT:-quickstart-out}
MODEL=${MODEL:-smollm2-135m}
ADAPT_STEPS=${ADAPT_STEPS:-20}
SPLIT=${SPLIT:-test}
mkdir -p "$OUT/runs"

if [ -z "${DATA:-}" ]; then
  DATA="$OUT/stdlib-docstrings"
  if [ ! -f "$DATA/collection.json" ]; then
    echo "== building the stdlib docstring collection in $DATA"
    llara demo-collection --out "$DATA"
  fi
fi
echo "== data: $DATA"

if [ "$ADAPT_STEPS" -gt 0 ]; then
  if [ ! -f "$OUT/adapted/llara_config.json" ]; then
    echo "== llara adapt: $ADAPT_STEPS steps of LLaRA adaptation on the corpus text (no labels)"
    llara adapt --model "$MODEL" --corpus "$DATA" --out "$OUT/adapted" --max-steps "$ADAPT_STEPS" \
      --batch-size 8 --max-length 128 --lr 1e-4 --bf16
  fi
  MODEL="$OUT/adapted"
fi

echo "== llara encode (passages, EBAE prompt) with $MODEL"
llara encode "$DATA" --model "$MODEL" --out "$OUT/embeddings" --max-length 192 --batch-size 32 --dtype bf16 --overwrite
echo "== llara index"
llara index "$OUT/embeddings" --out "$OUT/index" --overwrite
echo "== llara search (dense; queries with the EBAR prompt)"
llara search --index "$OUT/index" --queries "$DATA" --split "$SPLIT" --dtype bf16 --out "$OUT/runs/dense.trec"
echo "== llara search --bm25 (Lucene through Anserini)"
llara search --bm25 --corpus "$DATA" --queries "$DATA" --split "$SPLIT" --bm25-index "$OUT/bm25-index" \
  --out "$OUT/runs/bm25.trec"
echo "== llara search --fuse (reciprocal rank fusion)"
llara search --fuse "$OUT/runs/bm25.trec" --fuse "$OUT/runs/dense.trec" --method rrf --out "$OUT/runs/fused.trec"
echo "== llara evaluate"
llara evaluate "$OUT/runs/bm25.trec" "$OUT/runs/dense.trec" "$OUT/runs/fused.trec" \
  --qrels "$DATA" --split "$SPLIT" --baseline bm25 --plot "$OUT/evaluation.png"
echo "== done: runs in $OUT/runs, plot in $OUT/evaluation.png"
