"""Store rule 36's a2 as the bundled checkpoint's adaptation default (weights unchanged bit for bit), with the
choice in the provenance. Run from the repository root: PYTHONPATH=. python benchmarks/quality_64/spectral_d/bundle_r36.py
"""
import dataclasses

import torch

from meta_core import checkpoint

PATH = "checkpoints/metagan_64.safetensors"

model = checkpoint.load(PATH)
before = {**model.g_params(), **model.d_params()}
cfg = dataclasses.replace(model.adapt_defaults, anchor_weight=10.0, anchor_candidates=256)
provenance = {**model.provenance, "adaptation_default": {
    "chosen": "rule 36's a2: rule 24's e3 (strategy full, Adam 1e-3, translation, no R1, batch 16, 170 steps) plus "
              "anchors: each reference paired with the nearest of 256 prior samples, G's loss adds their L1 distance "
              "to it at weight 10",
    "rule": "benchmarks/quality_64/spectral_d/README.md (rule 36 and its held-out check)",
    "validation_geomean_fd_at_170_steps": 39.8,
    "validation_mean_recall": 0.218,
    "previous": model.provenance.get("adaptation_default"),
}}
entries, _ = checkpoint.read_header(PATH)
dtype = torch.float16 if any(e.get("dtype") == "F16" for e in entries.values()) else torch.float32
checkpoint.save(model.with_params(model.g_params(), model.d_params(), adapt_defaults=cfg, provenance=provenance),
                PATH, dtype=dtype)
after = checkpoint.load(PATH)
assert all(torch.equal(before[n], t) for n, t in {**after.g_params(), **after.d_params()}.items())
print(PATH, after.adapt_defaults)
