#!/usr/bin/env bash
# Rule 54: rule 53's g2 with 4096 anchor candidates on validation (r54.sh validation), then its held-out check,
# 2 runs per cell (r54.sh heldout).
cd "$(dirname "$0")/../../.." || exit 1
R=${R:-/work/runs/s28}; A=benchmarks/quality_64/spectral_d/arms.sh
G3=g3=,anchor_weight=30,ema_half_life=5,anchor_candidates=4096
export BUDGET=250 RES=128 META=checkpoints/metagan_128.safetensors
case $1 in
  validation) bash $A validation $R $G3;;
  heldout) REPEATS=2 bash $A heldout $R $G3;;
  *) echo "r54.sh: validation or heldout, not '$1'" >&2; exit 2;;
esac
