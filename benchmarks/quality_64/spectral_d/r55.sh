#!/usr/bin/env bash
# Rule 55: rules 50-51's conditional candidates adapted from the nearest training style.
#   r55.sh validation      n60 (u60) and n90 (u90) at the stored default plus style_init=nearest
#   r55.sh heldout u60|u90 the qualifier's held-out check, 2 runs per cell
cd "$(dirname "$0")/../../.." || exit 1
R=${R:-/work/runs/s27}; A=benchmarks/quality_64/spectral_d/arms.sh; N=,anchor_weight=10,ema_half_life=5,style_init=nearest
case $1 in
  validation) for u in u60 u90; do META=$R/$u.safetensors bash $A validation /work/runs/s28 n${u#u}=$N; done;;
  heldout) META=$R/$2.safetensors REPEATS=2 bash $A heldout /work/runs/s28 n${2#u}=$N;;
  *) echo "r55.sh: validation or heldout u60|u90, not '$1'" >&2; exit 2;;
esac
