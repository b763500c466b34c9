#!/usr/bin/env bash
# One time-boxed GPU piece of the 64 px DCGAN-family prior (issue 15, item 3), for a session that is lent a GPU.
# CI never runs it. The piece continues the bundled weights (`--init`: G's EMA and D; Adam starts fresh) at a
# large batch under bf16 and returns the weights in fp16 (13 MB, under the device tool's 16 MB per file) with
# its loss log and sample grids. Optimizer state never comes back (94 MB, and it stays out of git anyway).
#
#   python tools/pack_tasks.py pack data/dicebear64_4k/train .gpu/train64 --limit 1500   # here (~40 MB)
#   run: bash tools/gpu_pretrain64.sh        (carry .gpu; files land in $OUT)
#
# First a 30 s timing piece (CUDA start-up and the real step rate, printed), then the main piece of MINUTES.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_pretrain_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-7}
BATCH=${BATCH:-128}
AUG_OPS=${AUG_OPS:-color+translation+cutout}  # DiffAugment ops (pretrain --augment-ops)
PACKED=${PACKED:-.gpu/train64}
WORK=${WORK:-/tmp/metagan_gpu64}
INIT=${INIT:-checkpoints/metagan_64.safetensors}
mkdir -p "$OUT" "$WORK"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started ))s] $*"; }

$PY tools/pack_tasks.py unpack "$PACKED" "$WORK/train64"
say "data unpacked"
piece() {  # minutes out
  $PY -m meta_core pretrain --tasks "$WORK/train64" --init "$INIT" --out "$2" --arch dcgan \
    --batch-size "$BATCH" --lr 0.0002 --r1-gamma 0.1 --r1-interval 16 --steps 100000000 --minutes "$1" --augment-ops "$AUG_OPS" \
    --checkpoint-minutes 2 --fast --bf16 --device "$DEVICE" --seed 2
}
piece 0.5 "$WORK/timing.safetensors" 2>&1 | tr '\r' '\n' | grep -E "it/s|s/it|pretraining on|wrote" | tail -n 3
say "timing piece done"
piece "$MINUTES" "$WORK/piece.safetensors" > "$WORK/piece.log" 2>&1 || { tail -c 2000 "$WORK/piece.log"; exit 1; }
say "main piece done"
$PY - "$WORK/piece.safetensors" "$OUT/metagan_64_gpu_piece.safetensors" <<'EOF'
import sys

import torch

from meta_core import checkpoint

checkpoint.save(checkpoint.load(sys.argv[1]), sys.argv[2], dtype=torch.float16)
EOF
tr '\r' '\n' < "$WORK/piece.log" | grep -vE "^pretrain: " > "$OUT/piece.log" || true
cp "$WORK"/piece/log.jsonl "$OUT/" && cp "$(ls "$WORK"/piece/fakes*.png | tail -n 1)" "$OUT/"
say "wrote $OUT"
