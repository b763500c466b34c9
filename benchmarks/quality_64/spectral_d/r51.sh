#!/usr/bin/env bash
# Rule 51: rule 50's conditional piece resumed exactly for 30 more minutes (u90), its prior fit and validation.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
R=${R:-/work/runs/s27}; S=benchmarks/quality_64/spectral_d
python -m meta_core pretrain --tasks data/dicebear64_4k_white/train --arch dcgan --d-spectral-norm --channel-base 2048 \
  --channel-max 512 --r1-gamma 0 --batch-size 32 --lr 0.0002 --augment-ops color+translation+cutout --steps 1000000 \
  --minutes 30 --checkpoint-minutes 5 --fast --bf16 --device cpu --seed 50 --style-lr-mul 2 --out $R/u.safetensors \
  --resume $R/u.state.safetensors > $R/piece3.log 2>&1
cp $R/u.safetensors $R/u90.safetensors
PYTHONPATH=. python $S/prior_fit_r49.py 2 data/dicebear64/train $R/u90.safetensors > $R/prior_fit_u90.txt 2>&1
META=$R/u90.safetensors $S/arms.sh validation $R u90=,anchor_weight=10,ema_half_life=5
touch $R/r51.done
