#!/usr/bin/env bash
# Rules 36-37's arms, one after another, each rule 24's setting (E3) plus its own changes:
#   arms.sh validation OUT inc= a2=,anchor_weight=10    4 runs per cell on dylan and miniavs
#   arms.sh heldout OUT inc= cand=,anchor_weight=10     2 runs per cell on the 8 held-out styles
#   arms.sh validation OUT old=stored                    the checkpoint's own stored default, no E3
# META=other.safetensors arms.sh ... judges another checkpoint (default: the bundled one); SHOTS=1 other K (default 10);
# RES=128 the 128 px data and bundled checkpoint (default 64); REPEATS=1 one held-out run per cell (default 2);
# BUDGET=250 the step count of arms that are not `stored` (default 170)
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
RES=${RES:-64}; KIND=$1; OUT=$2; shift 2; mkdir -p "$OUT"
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
case $KIND in
  validation) DATA=(--heldout data/dicebear$RES/train --styles dylan,miniavs --repeats 4); PREFIX=;;
  heldout) DATA=(--heldout data/dicebear$RES/heldout --repeats ${REPEATS:-2}
                 --exclude glass,icons,identicon,rings,shapes,dylan,miniavs,fun-emoji); PREFIX=held_;;
  *) echo "arms.sh: the first argument is validation or heldout, not '$KIND'" >&2; exit 2;;
esac
for arm in "$@"; do
  name=$PREFIX${arm%%=*}
  if [ "${arm#*=}" = stored ]; then ADAPT=(); STEPS=0; else ADAPT=(--adapt "$E3${arm#*=}"); STEPS=${BUDGET:-170}; fi
  date -u > "$OUT/$name.log"
  python -m meta_core bench-quality --meta "${META:-checkpoints/metagan_$RES.safetensors}" "${ADAPT[@]}" \
    --evaluator assets/evaluator_64.safetensors "${DATA[@]}" --shots "${SHOTS:-10}" --methods meta --samples 300 --budgets $STEPS \
    --out "$OUT/$name" >> "$OUT/$name.log" 2>&1
  date -u >> "$OUT/$name.log"
done
touch "$OUT/${PREFIX}done"
