"""Few-shot adaptation of a (meta-learned) model to a handful of reference images."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import AdaptConfig
from .fastpath import FastPath
from .images import prepare_references
from .loop import AdaptStats, InnerLoop, StepCallback, diverged_error
from .model import MetaGAN


@dataclass
class AdaptResult:
    model: MetaGAN     # the adapted model (a new one; the input is untouched)
    stats: AdaptStats  # steps, rollbacks, loss history, wall time


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
        g, d, stats = InnerLoop(model, cfg, fast).run(g, d, real, generator, on_step)
        if stats.rollbacks >= stats.steps:  # every step undone: the "adapted" model would be the input
            raise diverged_error(stats.rollbacks, stats.steps, cfg)
        base_hash = model.content_hash() if cfg.strategy == "modulation" else None
        provenance = dict(model.provenance, adapted={"references": int(real.shape[0]), "steps": cfg.steps,
                                                      "strategy": cfg.strategy, "seconds": round(stats.seconds, 3)})
        return AdaptResult(model.with_params(g, d, base_hash=base_hash, provenance=provenance), stats)
