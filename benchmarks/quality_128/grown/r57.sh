#!/usr/bin/env bash
# Rule 57: grow (start file), piece (60 min, trunk frozen), validation; `r57.sh heldout` for the held-out check.
#   bash benchmarks/quality_128/grown/r57.sh RUN_DIR [heldout]
set -euo pipefail
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
RUN=$1; mkdir -p "$RUN"
if [ "${2:-}" = heldout ]; then
  META=$RUN/gr.safetensors REPEATS=2 RES=128 benchmarks/quality_64/spectral_d/arms.sh heldout "$RUN" gr=stored
  exit
fi
PYTHONPATH=. python benchmarks/quality_128/grown/grow.py "$RUN/grown.safetensors" 1500 > "$RUN/grow.log" 2>&1
FREEZE=$(tail -1 "$RUN/grow.log" | sed 's/.*--freeze-g //')
python -m meta_core pretrain --tasks data/dicebear128_4k/train --resolution 128 --init "$RUN/grown.safetensors" \
  --freeze-g "$FREEZE" --r1-gamma 0 --batch-size 32 --lr 0.0002 --augment-ops color+translation+cutout \
  --steps 1000000 --checkpoint-minutes 10 --fast --bf16 --device cpu --seed 57 --minutes 60 \
  --out "$RUN/gr.safetensors" > "$RUN/piece.log" 2>&1
META=$RUN/gr.safetensors RES=128 benchmarks/quality_64/spectral_d/arms.sh validation "$RUN" gr=stored
