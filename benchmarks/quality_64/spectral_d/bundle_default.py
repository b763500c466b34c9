"""Store a rule's chosen adaptation setting as the bundled checkpoint's default, with the choice in the provenance
(the previous entry kept under "previous"). Without --weights the weights stay unchanged bit for bit; with --weights a
pretraining piece's G and D (and its provenance, which names the pieces before it) replace them, in the bundled
file's dtype. From the repository root:

    PYTHONPATH=. python benchmarks/quality_64/spectral_d/bundle_default.py --adapt anchor_weight=10 \
        --chosen "rule 36's a2: ..." --rule "rule 36" --validation-geomean 39.8 --validation-recall 0.218
"""
import argparse

import torch

from meta_core import checkpoint
from meta_core.config import apply_overrides

ap = argparse.ArgumentParser()
ap.add_argument("--checkpoint", default="checkpoints/metagan_64.safetensors")
ap.add_argument("--weights", help="a pretraining piece's checkpoint whose weights replace the bundled ones")
ap.add_argument("--adapt", default="", help="AdaptConfig changes on top of the stored default")
ap.add_argument("--chosen", required=True, help="what the setting (and weights) are, in words")
ap.add_argument("--rule", required=True, help="the rule that chose it (benchmarks/quality_64/spectral_d/README.md)")
ap.add_argument("--validation-geomean", type=float, required=True)
ap.add_argument("--validation-recall", type=float, required=True)
args = ap.parse_args()

bundled = checkpoint.load(args.checkpoint)
dtype = checkpoint.stored_dtype(args.checkpoint)
source = checkpoint.load(args.weights) if args.weights else bundled
if source.config != bundled.config:
    raise SystemExit(f"{args.weights} is another architecture than {args.checkpoint}; this script only swaps weights")
before = {**source.g_params(), **source.d_params()}
cfg = apply_overrides(bundled.adapt_defaults, args.adapt) if args.adapt else bundled.adapt_defaults
provenance = {**source.provenance, "adaptation_default": {
    "chosen": args.chosen,
    "rule": f"benchmarks/quality_64/spectral_d/README.md ({args.rule} and its held-out check)",
    f"validation_geomean_fd_at_{cfg.steps}_steps": args.validation_geomean,
    "validation_mean_recall": args.validation_recall,
    "previous": bundled.provenance.get("adaptation_default"),
}}
checkpoint.save(source.with_params(source.g_params(), source.d_params(), adapt_defaults=cfg, provenance=provenance),
                args.checkpoint, dtype=dtype)
after = checkpoint.load(args.checkpoint)
assert all(torch.equal(before[n].to(dtype).float(), t) for n, t in {**after.g_params(), **after.d_params()}.items())
print(args.checkpoint, after.adapt_defaults)
