#!/usr/bin/env bash
# Rule 49: the mixed-background data, the piece, both arms on validation, the prior fits.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
R=/work/runs/s26; S=benchmarks/quality_64/spectral_d; mkdir -p $R
STYLES=adventurer,adventurer-neutral,avataaars,avataaars-neutral,big-ears,big-ears-neutral,big-smile,croodles,croodles-neutral,notionists,notionists-neutral,open-peeps,personas,toon-head
[ -d data/dicebear64_4k_white ] || python -m meta_core build-tasks --out data/dicebear64_4k_white --count 4000 \
  --resolution 64 --no-heldout --styles $STYLES > $R/data.log 2>&1
if [ ! -d data/dicebear64_mix/train ]; then  # each style: its 4000 white images and its 4000 random-background ones
  A=$PWD  # absolute link targets without a realpath and basename process per image
  for s in ${STYLES//,/ }; do
    mkdir -p data/dicebear64_mix/train/$s
    for f in data/dicebear64_4k_white/train/$s/*.png; do ln -s "$A/$f" "data/dicebear64_mix/train/$s/w_${f##*/}"; done
    for f in data/dicebear64_4k_bg/train/$s/*.png; do ln -s "$A/$f" "data/dicebear64_mix/train/$s/b_${f##*/}"; done
  done
fi
python -m meta_core pretrain --tasks data/dicebear64_mix/train --init checkpoints/metagan_64.safetensors --r1-gamma 0 \
  --batch-size 32 --lr 0.0002 --augment-ops color+translation+cutout --steps 1000000 --minutes 85 --checkpoint-minutes 5 \
  --fast --bf16 --device cpu --seed 49 --out $R/mix.safetensors > $R/mix.log 2>&1
PYTHONPATH=. python $S/rescale_r48.py $R/mix.safetensors checkpoints/metagan_64.safetensors $R/q2.safetensors > $R/q2.log
META=$R/mix.safetensors $S/arms.sh validation $R q1=,anchor_weight=10,ema_half_life=5
META=$R/q2.safetensors $S/arms.sh validation $R q2=,anchor_weight=10,ema_half_life=5
PYTHONPATH=. python $S/prior_fit_r49.py 2 data/dicebear64_mix/train,data/dicebear64/train $R/mix.safetensors > $R/prior_fit.txt 2>&1
touch $R/r49.done
