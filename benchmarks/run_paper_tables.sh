#!/usr/bin/env bash
# Reproduce the paper's Tables 2 (PSNR/SSIM) and 3 (speed) with sr-bench and record them,
# with the machine described, in benchmarks/results/bench_<mode>/ (bench.md, bench.json, bench.png).
#
#   benchmarks/run_paper_tables.sh            # quick: a few minutes on a 2-core CPU
#   benchmarks/run_paper_tables.sh full       # every backend for every preset (long on a CPU)
#   benchmarks/run_paper_tables.sh full --device cuda --out benchmarks/results/bench_full_h100
#
# Extra arguments go to sr-bench (the last --out wins). The bundled default model, when it
# is there, is added to the quality table (ONNX fp32 and TFLite int8). Needs the bench extra
# for the plot and the OpenCV peers: pip install -e ".[train,convert,bench]".
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-quick}"
[ $# -gt 0 ] && shift
case "$mode" in
  quick) flags=(--quick) ;;
  full) flags=() ;;
  *) echo "usage: $0 [quick|full] [sr-bench options...]" >&2; exit 2 ;;
esac
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
models=()
for m in sdk/models/default.onnx sdk/models/default-int8.tflite; do
  [ -f "$m" ] && models+=(--model "$m")
done
exec nice -n 5 "$PY" -m scopesr.bench.cli "${flags[@]}" --out "benchmarks/results/bench_${mode}" \
  "${models[@]}" "$@"
