#!/usr/bin/env bash
# Rule 36's held-out check, the incumbent first: `r36_heldout.sh OUT_DIR ARM_SETTING` (e.g. ",anchor_weight=10")
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
OUT=$1; CAND=$2; mkdir -p "$OUT"
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
for arm in inc cand; do
  SET=$E3; [ "$arm" = cand ] && SET="$E3$CAND"
  date -u > "$OUT/held_$arm.log"
  python -m meta_core bench-quality --meta checkpoints/metagan_64.safetensors --adapt "$SET" \
    --evaluator assets/evaluator_64.safetensors --heldout data/dicebear64/heldout --shots 10 --budgets 170 \
    --methods meta --samples 300 --repeats 2 \
    --exclude glass,icons,identicon,rings,shapes,dylan,miniavs,fun-emoji --out "$OUT/held_$arm" >> "$OUT/held_$arm.log" 2>&1
  date -u >> "$OUT/held_$arm.log"
done
touch "$OUT/held_done"
