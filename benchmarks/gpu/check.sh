#!/usr/bin/env bash
# The paper-scale GPU check: a random LLaMA-2-7B-shaped model on one GPU, <= 8 minutes, one JSON in $OUT.
#
#   OUT=/path/to/dir bash benchmarks/gpu/check.sh             # on a machine with a GPU
#   OUT=/tmp bash benchmarks/gpu/check.sh --dry-run           # anywhere: CPU, tiny config
#
# Needs python with torch and transformers; the project travels as this working tree (no install, no
# downloads). The JSON is rewritten after every phase, so the hard time limit below keeps what was measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-benchmarks/results}"
LIMIT_S="${LIMIT_S:-480}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python}"
PYTHONPATH=. timeout --signal=TERM --kill-after=10 "$LIMIT_S" "$PYTHON" benchmarks/gpu/check.py --out "$OUT/gpu_check.json" "$@"
