"""Store a rule's chosen adaptation setting as the bundled checkpoint's default (weights unchanged bit for bit), with
the choice in the provenance (the previous entry kept under "previous"). From the repository root:

    PYTHONPATH=. python benchmarks/quality_64/spectral_d/bundle_default.py --adapt anchor_weight=10 \
        --chosen "rule 36's a2: ..." --rule "rule 36" --validation-geomean 39.8 --validation-recall 0.218
"""
import argparse

import torch

from meta_core import checkpoint
from meta_core.config import apply_overrides

ap = argparse.ArgumentParser()
ap.add_argument("--checkpoint", default="checkpoints/metagan_64.safetensors")
ap.add_argument("--adapt", required=True, help="AdaptConfig changes on top of the stored default")
ap.add_argument("--chosen", required=True, help="what the setting is, in words")
ap.add_argument("--rule", required=True, help="the rule that chose it (benchmarks/quality_64/spectral_d/README.md)")
ap.add_argument("--validation-geomean", type=float, required=True)
ap.add_argument("--validation-recall", type=float, required=True)
args = ap.parse_args()

model = checkpoint.load(args.checkpoint)
before = {**model.g_params(), **model.d_params()}
cfg = apply_overrides(model.adapt_defaults, args.adapt)
provenance = {**model.provenance, "adaptation_default": {
    "chosen": args.chosen,
    "rule": f"benchmarks/quality_64/spectral_d/README.md ({args.rule} and its held-out check)",
    f"validation_geomean_fd_at_{cfg.steps}_steps": args.validation_geomean,
    "validation_mean_recall": args.validation_recall,
    "previous": model.provenance.get("adaptation_default"),
}}
checkpoint.save(model.with_params(model.g_params(), model.d_params(), adapt_defaults=cfg, provenance=provenance),
                args.checkpoint, dtype=checkpoint.stored_dtype(args.checkpoint))
after = checkpoint.load(args.checkpoint)
assert all(torch.equal(before[n], t) for n, t in {**after.g_params(), **after.d_params()}.items())
print(args.checkpoint, after.adapt_defaults)
