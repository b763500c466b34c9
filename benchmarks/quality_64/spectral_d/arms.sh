#!/usr/bin/env bash
# Rules 36-37's arms, one after another, each rule 24's setting (E3) plus its own changes:
#   arms.sh validation OUT inc= a2=,anchor_weight=10    4 runs per cell on dylan and miniavs
#   arms.sh heldout OUT inc= cand=,anchor_weight=10     2 runs per cell on the 8 held-out styles
# META=other.safetensors arms.sh ... judges another checkpoint (default: the bundled one); SHOTS=1 other K (default 10)
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
KIND=$1; OUT=$2; shift 2; mkdir -p "$OUT"
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
case $KIND in
  validation) DATA=(--heldout data/dicebear64/train --styles dylan,miniavs --repeats 4); PREFIX=;;
  heldout) DATA=(--heldout data/dicebear64/heldout --repeats 2
                 --exclude glass,icons,identicon,rings,shapes,dylan,miniavs,fun-emoji); PREFIX=held_;;
  *) echo "arms.sh: the first argument is validation or heldout, not '$KIND'" >&2; exit 2;;
esac
for arm in "$@"; do
  name=$PREFIX${arm%%=*}
  date -u > "$OUT/$name.log"
  python -m meta_core bench-quality --meta "${META:-checkpoints/metagan_64.safetensors}" --adapt "$E3${arm#*=}" \
    --evaluator assets/evaluator_64.safetensors "${DATA[@]}" --shots "${SHOTS:-10}" --methods meta --samples 300 --budgets 170 \
    --out "$OUT/$name" >> "$OUT/$name.log" 2>&1
  date -u >> "$OUT/$name.log"
done
touch "$OUT/${PREFIX}done"
