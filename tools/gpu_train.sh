#!/usr/bin/env bash
# One timed GPU training run for issue 6: the bundled checkpoints and the benchmark's baselines.
# Run by hand on a lent GPU (CI never has one); everything is time-boxed so the whole run fits ~9 minutes.
#
#   python tools/pack_tasks.py pack data/dicebear64/train .gpu/train64 --exclude $EXCLUDE    # here
#   python tools/pack_tasks.py pack data/dicebear128/train .gpu/train128 --exclude $EXCLUDE
#   bash tools/gpu_train.sh                      # there; files land in $OUT
#
# Phase 1 (P1 minutes): pooled pretraining at 64 and 128 px, side by side on the one GPU
#   (batch PRE_BATCH64 / PRE_BATCH128: a step is bound by kernel launches, so a larger batch costs little).
# Phase 2 (P2 minutes), all starting from the pooled weights, INNER inner steps (25: chosen on the
# validation styles, benchmarks/quality_64/validation_choice.txt):
#   meta64              Reptile over the labelled styles at 64 px
#   unl64               the same over k-means pseudo-tasks (labels thrown away): baseline (d)
#   meta128             Reptile at 128 px
# The first process to fail stops the run, so a broken run costs little device time.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_train_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
P1=${P1:-4.0}
P2=${P2:-3.6}
CHUNK=${CHUNK:-250}
INNER=${INNER:-25}
PRE_BATCH64=${PRE_BATCH64:-64}
PRE_BATCH128=${PRE_BATCH128:-32}
# Width: a step of this small model is bound by kernel launches on a GPU, so a wider one costs little time.
# CH_BASE=2048 CH_MAX=192 is ~4.0 M parameters (15.9 MB in float32, under the 16 MB limit).
CH_BASE=${CH_BASE:-1024}
CH_MAX=${CH_MAX:-128}
FAST=${FAST:+--fast}  # FAST=1: train on meta_core.fast (CUDA graphs, vmap across tasks)
PACKED=${PACKED:-.gpu}
WORK=${WORK:-/tmp/metagan_work}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT" "$WORK/logs"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started ))s] $*"; }

# Wait for every pid given; on the first failure kill the rest and stop the run.
wait_all() {
  local pids=("$@") pid
  while [ ${#pids[@]} -gt 0 ]; do
    wait -n "${pids[@]}"
    local rc=$?
    local alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    if [ $rc -ne 0 ]; then
      say "a process failed (exit $rc): stopping"
      kill "${alive[@]}" 2>/dev/null
      finish 1
    fi
    pids=("${alive[@]}")
  done
}

finish() {
  cp "$WORK"/*.safetensors "$OUT/" 2>/dev/null
  for f in "$WORK"/logs/*.log; do echo "== $f"; tail -n 3 "$f"; done
  tar czf "$OUT/logs.tar.gz" -C "$WORK" logs
  say "done (exit $1)"
  exit "$1"
}

{ nvidia-smi || true; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  > "$WORK/logs/env.log" 2>&1
"$PY" tools/pack_tasks.py unpack "$PACKED/train64" "$WORK/train64" 2> "$WORK/logs/unpack.log" &&
  "$PY" tools/pack_tasks.py unpack "$PACKED/train128" "$WORK/train128" 2>> "$WORK/logs/unpack.log" || finish 1
say "data unpacked"

if [ "$DEVICE" = cuda ]; then  # correctness of the GPU paths, alongside (small models, little GPU time)
  (timeout 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_fast.py tests/test_adapt.py --device cuda \
    --tb=short > "$WORK/logs/pytest_cuda.log" 2>&1; echo "exit $?" >> "$WORK/logs/pytest_cuda.log") &
fi

common=($FAST --device "$DEVICE" --seed 0 --log-every 20)
pids=()
# pretrain_bg NAME RESOLUTION BATCH: pooled training in the background; its pid joins `pids`
pretrain_bg() {
  "$PY" -m meta_core pretrain --tasks "$WORK/train$2" --out "$WORK/$1.safetensors" --resolution "$2" \
    --channel-base "$CH_BASE" --channel-max "$CH_MAX" --steps 1000000 --minutes "$P1" --chunk "$CHUNK" --batch-size "$3" \
    "${common[@]}" > "$WORK/logs/$1.log" 2>&1 &
  pids+=($!)
}
# meta_bg NAME --tasks|--unlabeled RESOLUTION INNER_STEPS: Reptile from pre<RESOLUTION> in the background
meta_bg() {
  "$PY" -m meta_core train "$2" "$WORK/train$3" --init "$WORK/pre$3.safetensors" --out "$WORK/$1.safetensors" \
    --inner-steps "$4" --steps 1000000 --minutes "$P2" --meta-batch 4 --support 10 --batch-size 8 \
    --checkpoint-minutes 1 "${common[@]}" > "$WORK/logs/$1.log" 2>&1 &
  pids+=($!)
}

pretrain_bg pre64 64 "$PRE_BATCH64"
pretrain_bg pre128 128 "$PRE_BATCH128"
wait_all "${pids[@]}"
say "phase 1 done"

pids=()
meta_bg meta64 --tasks 64 "$INNER"
meta_bg unl64 --unlabeled 64 "$INNER"
meta_bg meta128 --tasks 128 "$INNER"
wait_all "${pids[@]}"
say "phase 2 done"
wait  # the CUDA tests, if still running
finish 0
