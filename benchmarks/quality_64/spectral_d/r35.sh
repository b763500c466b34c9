#!/usr/bin/env bash
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
date -u > /work/runs/s14/w.log
python -m meta_core bench-quality --meta /work/runs/s14/w.safetensors --adapt $E3 --evaluator assets/evaluator_64.safetensors --heldout data/dicebear64/train --styles dylan,miniavs --shots 10 --methods meta --samples 300 --repeats 4 --budgets 170 --out /work/runs/s14/w >> /work/runs/s14/w.log 2>&1
date -u >> /work/runs/s14/w.log
PYTHONPATH=. python benchmarks/quality_64/spectral_d/prior_fit_r34.py 2 /work/runs/s14/w.safetensors > /work/runs/s14/prior_fit_w.txt 2>&1
touch /work/runs/s14/r35.done
