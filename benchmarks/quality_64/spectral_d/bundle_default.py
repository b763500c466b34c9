"""Store a rule's chosen adaptation setting as a bundled checkpoint's default, with the choice in the provenance
(the previous entry kept under "previous"). Without --weights the weights stay unchanged bit for bit; with --weights a
pretraining piece's G and D (and its provenance, which names the pieces before it) replace them, in the bundled
file's dtype. With --new-architecture the piece may be another architecture than the bundled file (rule 41's 128 px
DCGAN replacing the meta-trained StyleGAN2-family model): the file becomes the piece in the piece's dtype, and the
replaced file is named in the provenance. From the repository root:

    PYTHONPATH=. python benchmarks/quality_64/spectral_d/bundle_default.py --adapt anchor_weight=10 \
        --chosen "rule 36's a2: ..." --rule "rule 36" --validation-geomean 39.8 --validation-recall 0.218
    PYTHONPATH=. python benchmarks/quality_64/spectral_d/bundle_default.py \
        --checkpoint checkpoints/metagan_128.safetensors --new-architecture \
        --weights benchmarks/quality_128/dcgan_sn/prior_128.safetensors \
        --adapt-from checkpoints/metagan_64.safetensors --rule-file benchmarks/quality_128/dcgan_sn/README.md ...
"""
import argparse
import subprocess

import torch

from meta_core import checkpoint
from meta_core.config import apply_overrides

ap = argparse.ArgumentParser()
ap.add_argument("--checkpoint", default="checkpoints/metagan_64.safetensors")
ap.add_argument("--weights", help="a pretraining piece's checkpoint whose weights replace the bundled ones")
ap.add_argument("--new-architecture", action="store_true",
                help="let --weights be another architecture than --checkpoint (stored in --weights' dtype)")
ap.add_argument("--adapt-from", help="start from this checkpoint's stored adaptation default (default: --checkpoint's)")
ap.add_argument("--adapt", default="", help="AdaptConfig changes on top of the stored default")
ap.add_argument("--chosen", required=True, help="what the setting (and weights) are, in words")
ap.add_argument("--rule", required=True, help="the rule that chose it")
ap.add_argument("--rule-file", default="benchmarks/quality_64/spectral_d/README.md", help="where the rule is written")
ap.add_argument("--validation-geomean", type=float, required=True)
ap.add_argument("--validation-recall", type=float, required=True)
args = ap.parse_args()

bundled = checkpoint.load(args.checkpoint)
source = checkpoint.load(args.weights) if args.weights else bundled
if source.config != bundled.config and not args.new_architecture:
    raise SystemExit(f"{args.weights} is another architecture than {args.checkpoint}; pass --new-architecture to "
                     "replace the bundled model by it")
if source.resolution != bundled.resolution:
    raise SystemExit(f"{args.weights} is {source.resolution} px, {args.checkpoint} {bundled.resolution} px")
dtype = checkpoint.stored_dtype(args.weights if args.new_architecture else args.checkpoint)
before = {**source.g_params(), **source.d_params()}
defaults = checkpoint.load(args.adapt_from).adapt_defaults if args.adapt_from else bundled.adapt_defaults
cfg = apply_overrides(defaults, args.adapt) if args.adapt else defaults
provenance = {**source.provenance, "adaptation_default": {
    "chosen": args.chosen,
    "rule": f"{args.rule_file} ({args.rule} and its held-out check)",
    f"validation_geomean_fd_at_{cfg.steps}_steps": args.validation_geomean,
    "validation_mean_recall": args.validation_recall,
    "previous": bundled.provenance.get("adaptation_default"),
}}
if args.new_architecture:  # the replaced model stays in git history at the commit this ran on
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    provenance["replaces"] = {"file": f"git show {head}:{args.checkpoint}", "meta_step": bundled.meta_step,
                              "command": bundled.provenance.get("command")}
checkpoint.save(source.with_params(source.g_params(), source.d_params(), adapt_defaults=cfg, provenance=provenance),
                args.checkpoint, dtype=dtype)
after = checkpoint.load(args.checkpoint)
assert all(torch.equal(before[n].to(dtype).float(), t) for n, t in {**after.g_params(), **after.d_params()}.items())
print(args.checkpoint, after.adapt_defaults)
