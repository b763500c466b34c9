#!/usr/bin/env bash
# One timed GPU training run for issue 6: the bundled checkpoints and the benchmark's baselines.
# Run by hand on a lent GPU (CI never has one); everything is time-boxed so the whole run fits ~9 minutes.
#
#   python tools/pack_tasks.py pack data/dicebear64/train .gpu/train64 --exclude $EXCLUDE    # here
#   python tools/pack_tasks.py pack data/dicebear128/train .gpu/train128 --exclude $EXCLUDE
#   bash tools/gpu_train.sh                      # there; files land in $OUT
#
# Phase 1 (P1 minutes): pooled pretraining at 64 and 128 px, side by side on the one GPU.
# Phase 2 (P2 minutes), all starting from the pooled weights:
#   meta64a / meta64b   Reptile over the labelled styles, 10 / 25 inner steps (chosen later on validation styles)
#   unl64a / unl64b     the same over k-means pseudo-tasks (labels thrown away): baseline (d)
#   meta128             Reptile at 128 px, 10 inner steps
# The first process to fail stops the run, so a broken run costs little device time.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_train_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
P1=${P1:-4.0}
P2=${P2:-3.6}
CHUNK=${CHUNK:-250}
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
  for f in pre64 meta64a meta64b unl64a unl64b pre128 meta128; do
    [ -f "$WORK/$f.safetensors" ] && cp "$WORK/$f.safetensors" "$OUT/"
  done
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
    > "$WORK/logs/pytest_cuda.log" 2>&1; echo "exit $?" >> "$WORK/logs/pytest_cuda.log") &
fi

common=($FAST --device "$DEVICE" --seed 0 --channel-base 1024 --channel-max 128 --log-every 20)
"$PY" -m meta_core pretrain --tasks "$WORK/train64" --out "$WORK/pre64.safetensors" --resolution 64 \
  --steps 1000000 --minutes "$P1" --chunk "$CHUNK" --batch-size 32 "${common[@]}" > "$WORK/logs/pre64.log" 2>&1 &
a=$!
"$PY" -m meta_core pretrain --tasks "$WORK/train128" --out "$WORK/pre128.safetensors" --resolution 128 \
  --steps 1000000 --minutes "$P1" --chunk "$CHUNK" --batch-size 32 "${common[@]}" > "$WORK/logs/pre128.log" 2>&1 &
b=$!
wait_all $a $b
say "phase 1 done"

meta=($FAST --steps 1000000 --minutes "$P2" --meta-batch 4 --support 10 --batch-size 8 --device "$DEVICE" --seed 0
      --checkpoint-minutes 1 --log-every 20)
"$PY" -m meta_core train --tasks "$WORK/train64" --init "$WORK/pre64.safetensors" --out "$WORK/meta64a.safetensors" \
  --inner-steps 10 "${meta[@]}" > "$WORK/logs/meta64a.log" 2>&1 &
p1=$!
"$PY" -m meta_core train --tasks "$WORK/train64" --init "$WORK/pre64.safetensors" --out "$WORK/meta64b.safetensors" \
  --inner-steps 25 "${meta[@]}" > "$WORK/logs/meta64b.log" 2>&1 &
p2=$!
"$PY" -m meta_core train --unlabeled "$WORK/train64" --init "$WORK/pre64.safetensors" --out "$WORK/unl64a.safetensors" \
  --inner-steps 10 "${meta[@]}" > "$WORK/logs/unl64a.log" 2>&1 &
p3=$!
"$PY" -m meta_core train --unlabeled "$WORK/train64" --init "$WORK/pre64.safetensors" --out "$WORK/unl64b.safetensors" \
  --inner-steps 25 "${meta[@]}" > "$WORK/logs/unl64b.log" 2>&1 &
p4=$!
"$PY" -m meta_core train --tasks "$WORK/train128" --init "$WORK/pre128.safetensors" --out "$WORK/meta128.safetensors" \
  --inner-steps 10 "${meta[@]}" > "$WORK/logs/meta128.log" 2>&1 &
p5=$!
wait_all $p1 $p2 $p3 $p4 $p5
say "phase 2 done"
wait  # the CUDA tests, if still running
finish 0
