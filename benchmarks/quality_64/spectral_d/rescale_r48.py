"""Rule 48: give a checkpoint's scale-invariant weights another checkpoint's norms, changing no function.

G's linear input and its up-convs are each followed by pixel norm, and every D conv runs spectrally normalised, so
scaling one of those weight tensors changes no output; it only changes how far a step of Adam (whose steps have a
fixed size) turns it: the effective learning rate goes as 1 / norm. Pretraining grows these norms (with no weight
decay nothing pulls them back), so a longer piece adapts with smaller effective steps.
Usage: rescale_r48.py FILE NORMS_FROM OUT (checks that samples and D logits are unchanged)"""
import sys

import torch

from meta_core import checkpoint


def scale_invariant(model) -> list[str]:
    names = ["G.input.weight"] + [f"G.{n}" for n, _ in model.G.named_parameters() if n.endswith("conv.weight")]
    if model.config.discriminator.spectral_norm:
        names += [f"D.{n}" for n, _ in model.D.named_parameters() if n.endswith("weight")]
    return names


def named(model) -> dict:
    return {**{f"G.{n}": p for n, p in model.G.named_parameters()},
            **{f"D.{n}": p for n, p in model.D.named_parameters()}}


def main() -> None:
    src, ref_file, out = sys.argv[1:4]
    model, ref = checkpoint.load(src), checkpoint.load(ref_file)
    if model.config.generator.arch != "dcgan":
        sys.exit(f"{src} is not a DCGAN-family model; which of its weights are scale-invariant is known only for those")
    z = torch.randn(16, model.config.generator.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.G(z)
        logits = model.D(before)
        params, refs = named(model), named(ref)
        for name in scale_invariant(model):
            factor = refs[name].norm() / params[name].norm()
            params[name].mul_(factor)
            print(f"{name:28s} x{factor.item():.3f}")
        after = model.G(z)
        logits_after = model.D(after)
    dg, dd = (after - before).abs().max().item(), (logits_after - logits).abs().max().item()
    print(f"max |dG| {dg:.2e}, max |dD| {dd:.2e}")
    model.provenance = {**model.provenance, "rescaled_to_norms_of": ref_file}
    checkpoint.save(model, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
