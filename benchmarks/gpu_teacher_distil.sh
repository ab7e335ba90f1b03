#!/usr/bin/env bash
# Train the GPU teacher and distil the edge student from it, inside a fixed time budget: what a
# session does with the rest of a lent GPU after benchmarks/run_gpu_checks.sh.
#
#   BUDGET_S=450 bash benchmarks/gpu_teacher_distil.sh      # device tool: run(..., timeout_s=BUDGET_S+30)
#
# Three runs, all on the default model's data and degradation (trainer/recipes/default-zoom10.toml;
# its held-out evaluation left out here, so the eval sources need not travel; score the results on
# the CPU afterwards with sr-train's evaluation or benchmarks/bench_unseen.py):
#   1. the trunk, L1, at a constant learning rate until its share of the budget is spent. By
#      default (TEACHER_PRESET=grown) the bundled large model (the default grown to 32 x 8 and
#      trained on), grown again function-preservingly to TEACHER_CHANNELS x TEACHER_DEPTH (64 x 16:
#      about 35x the default's work per pixel) by `--init-from`, so the teacher starts at the large
#      model's quality instead of below bicubic; on the CPU the 32 x 8 growth gained +0.24 dB on
#      clean images over the default (docs/degradation.md, "A larger model for stills").
#      TEACHER_FROM=sdk/models/default-weights.safetensors grows the default instead. Any other preset name trains that generator from scratch with the bicubic anchor
#      (`paper`: the paper's, as the first GPU session did without the anchor, 2026-12-04: after
#      5 minutes 1.15 dB below bicubic on a clean high-SNR image; "A teacher on a lent GPU").
#      It is the long run: it continues from runs/teacher-gpu-grown (or
#      runs/teacher-gpu-anchored for a preset) when a checkpoint is there (carry it), so sessions
#      add up with exact resume.
#   2. the anneal: a copy of the trunk's weights taken down a cosine to 1e-6 in ANNEAL_S seconds
#      (step count from the trunk's measured steps/s): the teacher used below. Made fresh each time.
#   3. the distillation: the bundled default (student-robust) fine-tuned through the int8 rounding
#      on the L1 to the ground truth plus the L1 to the teacher's 4-copy ensemble (fp32: the int8
#      rounding is emulated in fp32, and cuDNN runs the teacher's fp32 convolutions as TF32).
#
# Results go to $OUT when set (the device tool brings it back), else runs/gpu-session/:
#   session.log, runs.tar.gz (each run's config, metrics, throughput, final weights and card, the
#   student's checkpoints; no teacher weights or optimiser states, which pass the device tool's
#   16 MB file limit only one by one below),
#   teacher.safetensors (the annealed teacher), teacher-ckpt.part-* (the trunk's latest
#   checkpoint in 15 MB pieces, for --resume next time: cat them into
#   $TRUNK/checkpoints/step_NNNNNNNN.pt beside the run's config.json from runs.tar.gz).
# What must travel (the device tool's carry, 64 MB a call): .samples/ (the training sources' files,
# ~48 MB, laid out as their packages: `python benchmarks/make_samples_dir.py`) and, to continue the trunk,
# the trunk's run folder (~24 MB). Both at once pass the limit, but a warm machine keeps ignored
# folders between calls: carry .samples in a first call (run_gpu_checks.sh, or a short `true`),
# the trunk's folder in this one. A session that has run the checks before can give this script
# one whole call (the device tool allows 600 s a command): BUDGET_S=550.
# Without CUDA (DEVICE=cpu) the same script runs on the CPU, e.g. to try it with a tiny budget.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${OUT:-runs/gpu-session}
mkdir -p "$DEST"
source benchmarks/gpu_env.sh

BUDGET_S=${BUDGET_S:-450}       # everything, packing included
ANNEAL_S=${ANNEAL_S:-45}        # the teacher's cosine tail
DISTIL_S=${DISTIL_S:-120}       # the student's distillation
START_S=${START_S:-30}          # one run's start: reading the sources, spawning the loaders
PACK_S=${PACK_S:-20}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-12}
TEACHER_BATCH=${TEACHER_BATCH:-32}
TEACHER_PRESET=${TEACHER_PRESET:-grown}   # or a preset trained from scratch (paper; student-tiny to try it on a CPU)
TEACHER_CHANNELS=${TEACHER_CHANNELS:-64}  # the grown teacher's width and depth
TEACHER_DEPTH=${TEACHER_DEPTH:-16}
TEACHER_FROM=${TEACHER_FROM:-sdk/models/large/large-weights.safetensors}   # what it grows from
DISTIL_STEPS=${DISTIL_STEPS:-4000}   # the H200 ran 40 steps/s: 4000 fit in DISTIL_S=120 with its start
WORK=${WORK:-runs}               # the three run folders and the recipe's JSON copies
T_NAME=teacher-gpu-anchored A_NAME=teacher-gpu-anneal S_NAME=student-gpu-distil
[ "$TEACHER_PRESET" = grown ] && T_NAME=teacher-gpu-grown
TRUNK=$WORK/$T_NAME ANNEAL=$WORK/$A_NAME STUDENT=$WORK/$S_NAME
LOG="$DEST/session.log"
T0=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - T0))); }
say() { echo "== $(date -u +%H:%M:%S) [$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
minutes() { "$PY" -c "print(max(0.1, $1 / 60))"; }

# the recipe without its held-out evaluation (JSON: sr-train reads either)
CFG=$WORK/gpu-recipe.json
mkdir -p "$WORK"
"$PY" - "$WORK" <<'PYEOF' || exit 1
import json, sys, tomllib
work = sys.argv[1]
cfg = tomllib.load(open("trainer/recipes/default-zoom10.toml", "rb"))
for k in ("eval_sources", "eval_degradations", "eval_every", "eval_max_planes"):
    cfg.pop(k, None)
json.dump(cfg, open(f"{work}/gpu-recipe.json", "w"), indent=1)
cfg.pop("model_args", None)  # the student's (anchor kernel); the teacher takes its own
json.dump(cfg, open(f"{work}/gpu-recipe-teacher.json", "w"), indent=1)
PYEOF

[ -d .samples ] || say "warning: no .samples/ here: sources other than synthetic ones will be refused"
COMMON=(--config "$CFG" --device "$DEVICE" --workers "$WORKERS" --threads 4 --no-progress --log-every 200 --val-every 0)
if [ "$TEACHER_PRESET" = grown ]; then
    TEACHER=(--config "$CFG" --preset student-robust --model-arg "channels=$TEACHER_CHANNELS" --model-arg "depth=$TEACHER_DEPTH")
else
    TEACHER=(--config "$WORK/gpu-recipe-teacher.json" --preset "$TEACHER_PRESET" --model-arg in_channels=1 --model-arg out_channels=1 --model-arg anchor=true)
fi
TEACHER+=(--content-loss l1 --batch-size "$TEACHER_BATCH")

say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); budget ${BUDGET_S}s"

# 1. trunk: constant lr (a step schedule whose drop never comes), stopped by the time limit
trunk_s=$(($(left) - ANNEAL_S - DISTIL_S - 3 * START_S - PACK_S))
start=()   # how the trunk starts: fresh, grown from TEACHER_FROM (first session), or resumed
[ "$TEACHER_PRESET" = grown ] && start=(--init-from "$TEACHER_FROM")
[ -d "$TRUNK/checkpoints" ] && ls "$TRUNK"/checkpoints/*.pt >/dev/null 2>&1 && start=(--resume)
if [ "$trunk_s" -ge 20 ]; then
    say "trunk: ${trunk_s}s ${start[*]}"
    "$PY" -m scopesr.trainer.cli pretrain "${COMMON[@]}" "${TEACHER[@]}" --lr 2e-4 --lr-schedule step \
        --lr-drop-at 1000000000 --steps 1000000000 --ckpt-every 5000 --keep 1 \
        --time-limit-min "$(minutes "$trunk_s")" --out "$TRUNK" "${start[@]}" 2>&1 | tee -a "$LOG" | tail -n 5
    say "trunk: rc=${PIPESTATUS[0]}"
else
    say "trunk: skipped, only ${trunk_s}s left for it"
fi
[ -f "$TRUNK/final/generator.safetensors" ] || { say "no trunk weights: stopping"; exit 1; }

# 2. anneal: as many steps as the trunk's measured speed fits into ANNEAL_S
steps=$("$PY" -c "import json; t=json.load(open('$TRUNK/throughput.json')); print(max(50, int(0.8 * $ANNEAL_S * t.get('steps_per_s', 1))))")
rm -rf "$ANNEAL"
say "anneal: $steps steps"
"$PY" -m scopesr.trainer.cli pretrain "${COMMON[@]}" "${TEACHER[@]}" --init-from "$TRUNK/final/generator.safetensors" \
    --lr 2e-4 --lr-schedule cosine --lr-min 1e-6 --steps "$steps" --ckpt-every 0 \
    --time-limit-min "$(minutes $((ANNEAL_S + 15)))" --out "$ANNEAL" 2>&1 | tee -a "$LOG" | tail -n 3
say "anneal: rc=${PIPESTATUS[0]}"
teacher="$ANNEAL/final/generator.safetensors"
[ -f "$teacher" ] || teacher="$TRUNK/final/generator.safetensors"

# 3. distil the bundled default from the teacher's 4-copy ensemble, through the int8 rounding
distil_s=$(($(left) - PACK_S - START_S))
rm -rf "$STUDENT"
say "distil: ${distil_s}s, $DISTIL_STEPS steps at most, teacher $teacher"
"$PY" -m scopesr.trainer.cli distill "${COMMON[@]}" --teacher "$teacher" --teacher-ensemble 4 \
    --precision fp32 --init-from sdk/models/default-weights.safetensors --quant-aware --steps "$DISTIL_STEPS" --lr 1e-4 \
    --lr-min 1e-6 --ckpt-every 1000 --keep 2 --time-limit-min "$(minutes "$distil_s")" --out "$STUDENT" \
    2>&1 | tee -a "$LOG" | tail -n 3
say "distil: rc=${PIPESTATUS[0]}"

# pack: small files in one archive, the teacher and the trunk's checkpoint beside it
tar czf "$DEST/runs.tar.gz" -C "$WORK" --exclude="$T_NAME/checkpoints" --exclude="$T_NAME/final/generator.safetensors" \
    --exclude="$A_NAME/checkpoints" --exclude="$A_NAME/final/generator.safetensors" --exclude='*/samples' \
    gpu-recipe.json "$T_NAME" "$A_NAME" "$S_NAME" 2>>"$LOG"
[ -f "$ANNEAL/final/generator.safetensors" ] && cp "$ANNEAL/final/generator.safetensors" "$DEST/teacher.safetensors"
ck=$(ls -t "$TRUNK"/checkpoints/*.pt 2>/dev/null | head -n 1)
[ -n "$ck" ] && split -b 15M -d "$ck" "$DEST/teacher-ckpt.$(basename "$ck" .pt).part-"
say "done: $(ls "$DEST" | tr '\n' ' ')"
