"""Few-shot adaptation of a (meta-learned) model to a handful of reference images."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from .config import AdaptConfig
from .errors import ConfigError
from .fastpath import FastPath
from .images import prepare_references
from .loop import AdaptStats, InnerLoop, StepCallback, diverged_error
from .model import MetaGAN
from .seeding import latents


@dataclass
class AdaptResult:
    model: MetaGAN     # the adapted model (a new one; the input is untouched)
    stats: AdaptStats  # steps, rollbacks, loss history, wall time


STYLE_PROBE_SEED = 0x57F1E  # fixed latents for choosing a starting style: the choice depends on the references only
STYLE_PROBE_SAMPLES = 32


@torch.no_grad()
def nearest_style(model: MetaGAN, real: torch.Tensor) -> int:
    """The training style (a row of a class-conditional G's `styles`) whose samples lie nearest the references
    `real` [K, 3, R, R] in [-1, 1]: the distance of the mean features of D's trunk (its 4x4 activations,
    mean-pooled), over fixed latents."""
    styles = getattr(model.G, "styles", None)
    if styles is None or not hasattr(model.D, "trunk"):
        raise ConfigError("style_init 'nearest' needs a class-conditional dcgan checkpoint that keeps its training "
                          "styles (pretrain --style-lr-mul); use style_init=stored with this one")

    def features(img: torch.Tensor) -> torch.Tensor:
        return model.D.trunk(img).float().mean(dim=(2, 3)).mean(dim=0)

    z = latents(STYLE_PROBE_SEED, 0, STYLE_PROBE_SAMPLES, model.config.generator.z_dim).to(real.device)
    target = features(real)
    g = model.g_params()
    dist = [(features(functional_call(model.G, {**g, "style": row}, (z,))) - target).square().sum() for row in styles]
    return int(torch.stack(dist).argmin())


def adapt(model: MetaGAN, references, config: AdaptConfig | None = None, *, generator: torch.Generator | None = None,
          seed: int = 0, on_step: StepCallback | None = None, background=(1.0, 1.0, 1.0),
          fast: FastPath | None = None) -> AdaptResult:
    """Adapt a (meta-learned) model to a few reference images of one character or style.

    Args:
        model: the starting model; never mutated.
        references: [K, C, H, W] tensor or list of [C, H, W] tensors in 0..1 (K from 1 to 64; any size;
            gray, gray+alpha, RGB or RGBA). See `images.prepare_references`.
        config: inner-loop settings; defaults to the ones stored in the checkpoint.
        generator: CPU `torch.Generator` for every random draw; `seed` seeds a fresh one if omitted.
        on_step: called with a `loop.StepProgress` after every step (its `preview(z)` draws images of
            the current weights in 0..1); raise from it to cancel.
        background: RGB in 0..1 under transparent reference pixels.
        fast: speed features (`FastPath`); None runs the reference configuration.
    Returns:
        `AdaptResult(model, stats)`: a new `MetaGAN` with the adapted weights, and the loss history.

    Example:
        >>> result = adapt(model, refs, seed=1)
        >>> images = sample(result.model, seed=7, count=16)
    """
    cfg = config or model.adapt_defaults
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    # Adaptation needs autograd even when the caller runs under inference mode (ComfyUI does): leave
    # it, and clone the weights and images so no inference tensor is saved for backward.
    with torch.inference_mode(False), torch.enable_grad():
        real = prepare_references(references, model.resolution, background).to(model.device).clone() * 2 - 1
        g = {n: t.detach().clone() for n, t in model.g_params().items()}
        d = {n: t.detach().clone() for n, t in model.d_params().items()}
        start = {}
        if cfg.style_init == "nearest":
            index = nearest_style(model, real)
            g["style"] = model.G.styles[index].detach().clone()
            start = {"style_init": index}
        g, d, stats = InnerLoop(model, cfg, fast).run(g, d, real, generator, on_step)
        if stats.rollbacks >= stats.steps:  # every step undone: the "adapted" model would be the input
            raise diverged_error(stats.rollbacks, stats.steps, cfg)
        base_hash = model.content_hash() if cfg.strategy == "modulation" else None
        provenance = dict(model.provenance, adapted={"references": int(real.shape[0]), "steps": cfg.steps,
                                                      "strategy": cfg.strategy, "seconds": round(stats.seconds, 3),
                                                      **start})
        return AdaptResult(model.with_params(g, d, base_hash=base_hash, provenance=provenance), stats)
