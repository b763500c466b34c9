"""The unadapted fit of a 128 px checkpoint on the gate's images at 128 px (training styles), seeds 0-2, as
`../dcgan_sn/end_piece.py` measures it, without writing anything.

    PYTHONPATH=. python benchmarks/quality_128/grown/fit.py CHECKPOINT.safetensors [THREADS]
"""
import sys

import torch

from meta_core import checkpoint
from meta_core.app.bench_quality import prior_fit
from meta_core.app.dicebear import ABSTRACT_STYLES
from meta_core.app.evaluator import load_evaluator

EXCLUDE = (*ABSTRACT_STYLES, "dylan", "miniavs", "fun-emoji")  # the gate's: abstract, validation, emoji

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
model = checkpoint.load(sys.argv[1])
evaluator = load_evaluator("assets/evaluator_64.safetensors")
fits = [prior_fit(model, evaluator, "data/dicebear128/train", EXCLUDE, seed=s) for s in range(3)]
print(f"{sys.argv[1]}: unadapted fit on {len(fits[0]['styles'])} training styles at 128 px: " +
      " / ".join(f"FD {f['fd']:.1f} against {f['real_halves_fd']:.2f}: {f['ratio']:.1f}x" for f in fits))
