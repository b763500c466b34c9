#!/usr/bin/env bash
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
while [ ! -f /work/runs/s14/bg.safetensors ] || pgrep -f "pretrain --tasks data/dicebear64_4k_bg" >/dev/null; do sleep 20; done
E3=strategy=full,freeze_d_blocks=0,lr_g=1e-3,lr_d=1e-3,batch_size=16,augment.ops=translation,loss.r1_gamma=0,ema_half_life=0
B="--evaluator assets/evaluator_64.safetensors --heldout data/dicebear64/train --styles dylan,miniavs --shots 10 --methods meta --samples 300 --repeats 4 --budgets 170"
for arm in inc4 n1 n2; do
  case $arm in
    inc4) M=checkpoints/metagan_64.safetensors; A=$E3;;
    n1) M=/work/runs/s14/bg.safetensors; A=$E3;;
    n2) M=/work/runs/s14/bg.safetensors; A=${E3%ema_half_life=0}ema_half_life=5;;
  esac
  date -u > /work/runs/s14/$arm.log
  python -m meta_core bench-quality --meta $M --adapt $A $B --out /work/runs/s14/$arm >> /work/runs/s14/$arm.log 2>&1
  date -u >> /work/runs/s14/$arm.log
done
PYTHONPATH=. python benchmarks/quality_64/spectral_d/prior_fit_r34.py 2 /work/runs/s14/bg.safetensors checkpoints/metagan_64.safetensors > /work/runs/s14/prior_fit.txt 2>&1
touch /work/runs/s14/r34.done
