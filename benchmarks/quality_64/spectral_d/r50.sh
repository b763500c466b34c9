#!/usr/bin/env bash
# Rule 50: class-conditional pieces from the bundled weights (30 + 30 minutes), their prior fits and validation.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
R=${R:-/work/runs/s27}; S=benchmarks/quality_64/spectral_d; mkdir -p $R
STYLES=adventurer,adventurer-neutral,avataaars,avataaars-neutral,big-ears,big-ears-neutral,big-smile,croodles,croodles-neutral,notionists,notionists-neutral,open-peeps,personas,toon-head
[ -d data/dicebear64_4k_white ] || python -m meta_core build-tasks --out data/dicebear64_4k_white --count 4000 \
  --resolution 64 --no-heldout --styles $STYLES > $R/data.log 2>&1
FLAGS=(--tasks data/dicebear64_4k_white/train --arch dcgan --d-spectral-norm --channel-base 2048 --channel-max 512
       --r1-gamma 0 --batch-size 32 --lr 0.0002 --augment-ops color+translation+cutout --steps 1000000 --minutes 30
       --checkpoint-minutes 5 --fast --bf16 --device cpu --seed 50 --style-lr-mul 2 --out $R/u.safetensors)
python -m meta_core pretrain "${FLAGS[@]}" --init checkpoints/metagan_64.safetensors > $R/piece1.log 2>&1
cp $R/u.safetensors $R/u30.safetensors
python -m meta_core pretrain "${FLAGS[@]}" --resume $R/u.state.safetensors > $R/piece2.log 2>&1
cp $R/u.safetensors $R/u60.safetensors
PYTHONPATH=. python $S/prior_fit_r49.py 2 data/dicebear64/train $R/u30.safetensors $R/u60.safetensors \
  > $R/prior_fit.txt 2>&1
META=$R/u30.safetensors $S/arms.sh validation $R u30=,anchor_weight=10,ema_half_life=5
META=$R/u60.safetensors $S/arms.sh validation $R u60=,anchor_weight=10,ema_half_life=5
touch $R/r50.done
