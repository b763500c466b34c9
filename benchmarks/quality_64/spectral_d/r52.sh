#!/usr/bin/env bash
# Rule 52: a class-conditional piece with a shared style row (--style-dropout 0.5) from the bundled weights.
#   r52.sh piece1    30 minutes from the bundled weights (v30) and its prior fit
#   r52.sh piece2    30 more by exact resume (v60) and its prior fit
#   r52.sh validate  both candidates on validation at the stored default
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
R=${R:-/work/runs/s27}; S=benchmarks/quality_64/spectral_d; mkdir -p $R
FLAGS=(--tasks data/dicebear64_4k_white/train --arch dcgan --d-spectral-norm --channel-base 2048 --channel-max 512
       --r1-gamma 0 --batch-size 32 --lr 0.0002 --augment-ops color+translation+cutout --steps 1000000 --minutes 30
       --checkpoint-minutes 5 --fast --bf16 --device cpu --seed 52 --style-lr-mul 2 --style-dropout 0.5
       --out $R/v.safetensors)
case $1 in
  piece1) python -m meta_core pretrain "${FLAGS[@]}" --init checkpoints/metagan_64.safetensors > $R/v_piece1.log 2>&1
          cp $R/v.safetensors $R/v30.safetensors
          PYTHONPATH=. python $S/prior_fit_r49.py 2 data/dicebear64/train $R/v30.safetensors > $R/prior_fit_v30.txt 2>&1;;
  piece2) python -m meta_core pretrain "${FLAGS[@]}" --resume $R/v.state.safetensors > $R/v_piece2.log 2>&1
          cp $R/v.safetensors $R/v60.safetensors
          PYTHONPATH=. python $S/prior_fit_r49.py 2 data/dicebear64/train $R/v60.safetensors > $R/prior_fit_v60.txt 2>&1;;
  validate) for v in v30 v60; do META=$R/$v.safetensors $S/arms.sh validation $R $v=,anchor_weight=10,ema_half_life=5; done;;
  *) echo "r52.sh: piece1, piece2 or validate, not '$1'" >&2; exit 2;;
esac
touch $R/r52_$1.done
