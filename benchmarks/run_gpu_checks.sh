#!/usr/bin/env bash
# The GPU checks in ONE run on a lent GPU machine (the device tool), about 8 minutes:
#   1. pytest -m gpu         the CUDA tests (SDK fast path, sr-bench runner, trainer)    <= 3 min
#   2. bench_gpu.py --quick  the targets: 512x512 latency, 1080p FPS, training img/s     <= 4 min
#   3. sr-bench --quick      Table 3 on torch-cuda for the paper preset and two students <= 1.5 min
# Each step has its own time limit (LIMIT_TESTS, LIMIT_BENCH, LIMIT_SRBENCH seconds override them),
# so one slow step cannot eat the others; the script goes
# on after a failing step and exits non-zero if any failed.
#
# Results go to $OUT when set (the device tool brings $OUT back), else benchmarks/results/:
#   gpu_tests.log, gpu_<device>.json/.md (bench_gpu), srbench/bench.{json,md,png}, checks.log
# From a session that was lent a GPU:
#   run(command="bash benchmarks/run_gpu_checks.sh", timeout_s=560)
# then copy gpu_<device>.json/.md into benchmarks/results/ and commit them.
# Optional: carry a folder .samples/ holding copies of the sample images, laid out as their packages
# (`python benchmarks/make_samples_dir.py`, ~48 MB), so the GPU tests that need real images run too
# (and gpu_teacher_distil.sh finds the default recipe's sources in a later call).
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
LOG="$DEST/checks.log"
: >"$LOG"

source benchmarks/gpu_env.sh

say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
fail=0
step() {  # step NAME LIMIT_S CMD...: run with a time limit, record the outcome
    local name=$1 limit=$2
    shift 2
    say "$name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    say "$name: rc=$rc in $((SECONDS - t0))s$([ $rc = 124 ] && echo ' (TIME LIMIT)')"
    [ $rc = 0 ] || fail=1
}

say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

step "gpu tests" "${LIMIT_TESTS:-180}" bash -o pipefail -c "'$PY' -m pytest -m gpu -q -rs -p no:cacheprovider --continue-on-collection-errors tests 2>&1 | tee '$DEST/gpu_tests.log'"
step "bench_gpu" "${LIMIT_BENCH:-240}" "$PY" benchmarks/bench_gpu.py --quick --out "$DEST"
step "sr-bench torch-cuda" "${LIMIT_SRBENCH:-90}" "$PY" -m scopesr.bench.cli --quick --device cuda --backends torch-cuda \
    --presets paper,student-small,student-medium --no-quality --repeats 20 --budget 1 --no-progress \
    --out "$DEST/srbench"
say "done: $([ $fail = 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
exit $fail
