#!/usr/bin/env bash
# The whole llara pipeline on the embedded default model (smollm2-135m), CPU only, no network:
#   adapt briefly -> encode corpus -> index -> search (dense + BM25) -> fuse -> evaluate against BM25,
# then how long each stage took and the machine summary of `llara env`.
# Data: $DATA (any BEIR-layout directory), else a known-item collection built from Python's own docstrings.
#
# The default workload fits 10 minutes on a 2-core CPU without native bf16 (fp32 at ~40 GFLOP/s; encoding costs
# ~212 MFLOP a token). More: QUICKSTART_DOCS=2000 QUICKSTART_QUERIES=300 ADAPT_STEPS=20 make quickstart.
# DTYPE=auto picks bf16 only where the CPU runs it natively (`llara env` says what it picks); DTYPE=fp32 forces it.
set -euo pipefail

OUT=${QUICKSTART_OUT:-quickstart-out}
MODEL=${MODEL:-smollm2-135m}
QUICKSTART_DOCS=${QUICKSTART_DOCS:-300}
QUICKSTART_QUERIES=${QUICKSTART_QUERIES:-100}
ADAPT_STEPS=${ADAPT_STEPS:-10}
ADAPT_BATCH=${ADAPT_BATCH:-8}
ADAPT_MAX_LENGTH=${ADAPT_MAX_LENGTH:-128}
ENCODE_MAX_LENGTH=${ENCODE_MAX_LENGTH:-128}
DTYPE=${DTYPE:-auto}
SPLIT=${SPLIT:-test}
mkdir -p "$OUT/runs"

STAGES=()
cpu_seconds() {  # user + system CPU seconds of the finished child processes (Linux; 0 elsewhere)
  if [ -r "/proc/$$/stat" ]; then
    awk -v tick="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($14 + $15) / tick }' "/proc/$$/stat"
  else
    echo 0
  fi
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
stage() {  # stage NAME COMMAND...: run COMMAND, remember its wall-clock and CPU seconds
  local name=$1 start=$EPOCHREALTIME cpu_start
  cpu_start=$(cpu_seconds)
  shift
  "$@"
  STAGES+=("$name $(elapsed "$start" "$EPOCHREALTIME") $(elapsed "$cpu_start" "$(cpu_seconds)")")
}
TOTAL_START=$EPOCHREALTIME

if [ -z "${DATA:-}" ]; then
  DATA="$OUT/stdlib-docstrings-${QUICKSTART_DOCS}d-${QUICKSTART_QUERIES}q"
  if [ ! -f "$DATA/collection.json" ]; then
    echo "== building the stdlib docstring collection ($QUICKSTART_DOCS documents, $QUICKSTART_QUERIES queries) in $DATA"
    stage data llara demo-collection --out "$DATA" --max-documents "$QUICKSTART_DOCS" \
      --num-queries "$QUICKSTART_QUERIES"
  fi
fi
echo "== data: $DATA"

if [ "$ADAPT_STEPS" -gt 0 ]; then
  ADAPTED="$OUT/adapted-$(basename "$DATA")-${ADAPT_STEPS}steps"
  if [ ! -f "$ADAPTED/llara_config.json" ]; then
    echo "== llara adapt: $ADAPT_STEPS steps of LLaRA adaptation on the corpus text (no labels)"
    # The paper's form, not llara adapt's default: at this 10-step budget it measured better side by side
    # (dense nDCG@10 0.506 against 0.369, fused 0.607 against 0.625; docs/results.md, quick start)
    stage adapt llara adapt --model "$MODEL" --corpus "$DATA" --out "$ADAPTED" --max-steps "$ADAPT_STEPS" \
      --batch-size "$ADAPT_BATCH" --max-length "$ADAPT_MAX_LENGTH" --lr 1e-4 --precision "$DTYPE" --overwrite \
      --prompt-family paper --objective paper
  fi
  MODEL="$ADAPTED"
fi

echo "== llara encode (passages, EBAE prompt) with $MODEL"
stage encode llara encode "$DATA" --model "$MODEL" --out "$OUT/embeddings" --max-length "$ENCODE_MAX_LENGTH" \
  --batch-size 32 --dtype "$DTYPE" --overwrite
echo "== llara index"
stage index llara index "$OUT/embeddings" --out "$OUT/index" --overwrite
echo "== llara search (dense; queries with the model's query prompt)"
stage search-dense llara search --index "$OUT/index" --queries "$DATA" --split "$SPLIT" --dtype "$DTYPE" \
  --out "$OUT/runs/dense.trec"
echo "== llara search --bm25 (Lucene through Anserini)"
stage search-bm25 llara search --bm25 --corpus "$DATA" --queries "$DATA" --split "$SPLIT" \
  --bm25-index "$OUT/bm25-index-$(basename "$DATA")" --out "$OUT/runs/bm25.trec"
# The default fusion (robust: BM25-anchored, a small fixed dense weight) never costs BM25 much with a weak dense
# run; RRF with k = 60 lowered nDCG@10 below BM25's here (docs/fusion.md)
echo "== llara search --fuse (BM25-anchored fusion, the label-free robust default)"
stage fuse llara search --fuse "$OUT/runs/bm25.trec" --fuse "$OUT/runs/dense.trec" --out "$OUT/runs/fused.trec"
echo "== llara evaluate"
stage evaluate llara evaluate "$OUT/runs/bm25.trec" "$OUT/runs/dense.trec" "$OUT/runs/fused.trec" \
  --qrels "$DATA" --split "$SPLIT" --baseline bm25 --plot "$OUT/evaluation.png"
echo "== done: runs in $OUT/runs, plot in $OUT/evaluation.png"

echo "== time per stage (wall-clock and CPU seconds; load average now: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
printf '  %-13s %8s %8s\n' stage wall cpu
for entry in "${STAGES[@]}"; do
  printf '  %-13s %8s %8s\n' ${entry}
done
printf '  %-13s %8s %8s\n' total "$(elapsed "$TOTAL_START" "$EPOCHREALTIME")" "$(cpu_seconds)"
echo "== machine (llara env)"
llara env
