"""Unadapted fit (stratified halves, seeds 0-2) of each checkpoint on each data folder.
Usage: prior_fit_r49.py THREADS DATA[,DATA...] CHECKPOINT...
(on the gate's folders, data/dicebear64/train and data/dicebear128/train, it leaves out the styles that are not
training styles)"""
import sys

import torch

from meta_core import checkpoint
from meta_core.app.bench_quality import prior_fit
from meta_core.app.evaluator import load_evaluator

torch.set_num_threads(int(sys.argv[1]))
ev = load_evaluator("assets/evaluator_64.safetensors")
EX = ("glass", "icons", "identicon", "rings", "shapes", "dylan", "miniavs", "fun-emoji")
for path in sys.argv[3:]:
    m = checkpoint.load(path)
    for data in sys.argv[2].split(","):
        ex = EX if data.rstrip("/") in ("data/dicebear64/train", "data/dicebear128/train") else ()
        r = [prior_fit(m, ev, data, ex, seed=s)["ratio"] for s in range(3)]
        print(f"{path}  {data}: " + " / ".join(f"{x:.1f}x" for x in r), flush=True)
