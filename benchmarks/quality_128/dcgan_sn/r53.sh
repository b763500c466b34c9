#!/usr/bin/env bash
# Rule 53: two 128 px adaptation arms on validation (r53.sh validation), each rule 45's s250k plus one change;
# then a qualifier's held-out check, 2 runs per cell (r53.sh heldout ARM=SETTINGS).
cd "$(dirname "$0")/../../.." || exit 1
R=${R:-/work/runs/s28}; A=benchmarks/quality_64/spectral_d/arms.sh
S250K=,anchor_weight=10,ema_half_life=5,anchor_candidates=1024
export BUDGET=250 RES=128 META=checkpoints/metagan_128.safetensors
case $1 in
  validation) bash $A validation $R g1=$S250K,augment.ops=color+translation+cutout g2=$S250K,anchor_weight=30;;
  heldout) REPEATS=2 bash $A heldout $R "$2";;
  *) echo "r53.sh: validation or heldout ARM=SETTINGS, not '$1'" >&2; exit 2;;
esac
