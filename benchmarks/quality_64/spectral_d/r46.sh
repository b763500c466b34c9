#!/usr/bin/env bash
# Rule 46's runs, after its piece: the swap, w1 and p1 on validation, then both prior fits.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
R=/work/runs/s25; S=benchmarks/quality_64/spectral_d
while pgrep -f "pretrain --tasks data/dicebear64_4k_bg" >/dev/null; do sleep 20; done
PYTHONPATH=. python $S/swap_d_r46.py $R/bg.safetensors checkpoints/metagan_64.safetensors $R/w1.safetensors
META=$R/w1.safetensors $S/arms.sh validation $R w1=,anchor_weight=10,ema_half_life=5
PYTHONPATH=. python $S/prior_fit_r34.py 2 $R/bg.safetensors > $R/prior_fit.txt 2>&1
META=$R/bg.safetensors $S/arms.sh validation $R p1=,anchor_weight=10,ema_half_life=5
touch $R/r46.done
