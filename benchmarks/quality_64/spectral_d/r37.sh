#!/usr/bin/env bash
# Rule 37's validation arms, one after another: `r37.sh OUT_DIR c1 c2`
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
OUT=$1; shift; mkdir -p "$OUT"
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
declare -A SET=([c1]=",anchor_weight=10,anchor_candidates=1024" [c2]=",anchor_weight=10,ema_half_life=5")
for arm in "$@"; do
  date -u > "$OUT/$arm.log"
  python -m meta_core bench-quality --meta checkpoints/metagan_64.safetensors --adapt "$E3${SET[$arm]}" \
    --evaluator assets/evaluator_64.safetensors --heldout data/dicebear64/train --styles dylan,miniavs --shots 10 \
    --methods meta --samples 300 --repeats 4 --budgets 170 --out "$OUT/$arm" >> "$OUT/$arm.log" 2>&1
  date -u >> "$OUT/$arm.log"
done
touch "$OUT/done"
