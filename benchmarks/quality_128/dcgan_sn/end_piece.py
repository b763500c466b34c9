"""End of a rule-41 piece: write its weights in fp16 to prior_128.safetensors (the one committed file that the
next piece overwrites) and print the unadapted fit on the gate's images at 128 px, seeds 0-2.

    PYTHONPATH=. python benchmarks/quality_128/dcgan_sn/end_piece.py RUN.safetensors [THREADS]
"""
import subprocess
import sys
from pathlib import Path

import torch

from meta_core import checkpoint
from meta_core.app.bench_quality import prior_fit
from meta_core.app.dicebear import ABSTRACT_STYLES
from meta_core.app.evaluator import load_evaluator

HERE = Path(__file__).parent
EXCLUDE = (*ABSTRACT_STYLES, "dylan", "miniavs", "fun-emoji")  # the gate's: abstract, validation, emoji

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
model = checkpoint.load(sys.argv[1])
checkpoint.save(model, HERE / "prior_128.safetensors", dtype=torch.float16)
# Session 19's piece was lost to a .gitignore rule: refuse to go on while git would not see the file.
if subprocess.run(["git", "check-ignore", "-q", str(HERE / "prior_128.safetensors")]).returncode == 0:
    sys.exit("prior_128.safetensors is git-ignored: whitelist it in .gitignore before committing the piece")
model = checkpoint.load(HERE / "prior_128.safetensors")  # judge what is committed
evaluator = load_evaluator("assets/evaluator_64.safetensors")
fits = [prior_fit(model, evaluator, "data/dicebear128/train", EXCLUDE, seed=s) for s in range(3)]
shown = model.provenance["pretrained"]["images_shown"]
print(f"{shown / 1000:.0f} kimg: unadapted fit on {len(fits[0]['styles'])} training styles at 128 px: " +
      " / ".join(f"FD {f['fd']:.1f} against {f['real_halves_fd']:.2f}: {f['ratio']:.1f}x" for f in fits))
