"""Rule 57's starting file: the bundled 64 px generator grown to 128 px, under the bundled 128 px discriminator.

The 128 px DCGAN generator (channel base 2048, cap 512) is the 64 px one with one more up-block (64 -> 32 channels,
64 -> 128 px) and a toRGB that reads 32 channels: every other parameter has the same name and shape, so it is
copied from the 64 px file. The new block and toRGB start by imitating the 64 px generator's images upsampled
2x (bilinear; L1, Adam), with the copied trunk held fixed, so that the GAN piece after it starts from pictures,
not noise. The discriminator (config and weights) and the adaptation default come from the 128 px file.

    PYTHONPATH=. python benchmarks/quality_128/grown/grow.py OUT.safetensors [STEPS] [THREADS]

It prints the trunk's names as the `--freeze-g` prefixes the piece trains with.
"""
import sys
import time

import torch
import torch.nn.functional as F

from meta_core import checkpoint
from meta_core.app.pretrain import piece_record
from meta_core.fastpath import autocast_bf16, native_bf16_cpu

G64, M128 = "checkpoints/metagan_64.safetensors", "checkpoints/metagan_128.safetensors"
out = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)

small, big = checkpoint.load(G64), checkpoint.load(M128)
gs, gb = small.config.generator, big.config.generator
if (gs.arch, gs.channel_base, gs.channel_max, gs.z_dim) != (gb.arch, gb.channel_base, gb.channel_max, gb.z_dim):
    sys.exit(f"the generators differ in more than resolution: {gs} against {gb}")
fresh = type(big).create(big.config, seed=57)  # the new layers' DCGAN initialisation
g = fresh.g_params()
theirs = small.g_params()
fits = {n: n in theirs and theirs[n].shape == g[n].shape for n in g}
layer = {n: n.rsplit(".", 1)[0] if "." in n else n for n in g}
copied = [n for n in g if all(fits[m] for m in g if layer[m] == layer[n])]  # whole layers only (not torgb's bias)
g = {n: (theirs[n] if n in copied else g[n]).detach().clone() for n in g}
new = [n for n in g if n not in copied]
frozen = sorted({".".join(n.split(".")[:2]) if n.startswith("blocks.") else n.split(".")[0] for n in copied})
print(f"copied {len(copied)} tensors from {G64}; new: {new}", file=sys.stderr)

grown = big.with_params(g, big.d_params())
params = {n: grown.G.get_parameter(n) for n in new}
for p in params.values():
    p.requires_grad_(True)
opt = torch.optim.Adam(params.values(), lr=1e-3, betas=(0.5, 0.99))
gen = torch.Generator().manual_seed(57)
started, bf16 = time.perf_counter(), native_bf16_cpu()
for step in range(1, steps + 1):
    z = torch.randn(32, gb.z_dim, generator=gen)
    with torch.no_grad(), autocast_bf16(bf16, "cpu"):
        target = F.interpolate(small.G(z).float(), scale_factor=2, mode="bilinear", align_corners=False)
    with autocast_bf16(bf16, "cpu"):
        loss = (grown.G(z).float() - target).abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if step % 100 == 0 or step == steps:
        print(f"step {step}: L1 {loss.item():.4f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
for p in params.values():
    p.requires_grad_(False)


def source(path: str, model) -> dict:
    """A source file's record: its weights' hash and the pieces that made it (as `pretrain --init` keeps them)."""
    return {"file": path, "content_hash": model.content_hash(),
            "pieces": [*model.provenance.get("pieces", []), piece_record(model.provenance)]}


grown.provenance = {
    "adaptation_default": big.provenance.get("adaptation_default"),
    "pretrained": {"steps": 0, "images_shown": 0},
    "grown_from": {
        "generator": {**source(G64, small), "copied": copied},
        "discriminator": source(M128, big),
        "new_layers": {"names": new, "init": f"L1 to the 64 px generator's images upsampled 2x (bilinear), {steps} "
                       f"Adam steps at batch 32, lr 1e-3, betas (0.5, 0.99), seed 57; final L1 {loss.item():.4f}"},
        "command": "PYTHONPATH=. python " + " ".join(sys.argv)},
}
checkpoint.save(grown, out)
print(f"wrote {out}; --freeze-g {','.join(frozen)}")
