"""Differentiable augmentation (DiffAugment: colour, translation, cutout) with explicit randomness.

Random parameters are drawn first, on the CPU, from a caller's `torch.Generator` (`draw`), then
applied as plain tensor arithmetic (`apply`). Keeping the two apart makes the result identical on any
device and keeps the differentiated function free of random calls (vmap- and graph-capture-safe).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .config import AugmentConfig

TRANSLATION_RATIO = 0.125  # DiffAugment's defaults
CUTOUT_RATIO = 0.5


class AugmentParams(NamedTuple):
    enable: torch.Tensor      # [N, 3] bool: colour, translation, cutout applied to each sample
    color: torch.Tensor       # [N, 3] uniform: brightness, saturation, contrast
    translation: torch.Tensor  # [N, 2] integer pixel shift (x, y)
    cutout: torch.Tensor      # [N, 2] integer top-left corner of the cut square (x, y)

    def to(self, device) -> AugmentParams:
        return AugmentParams(*(t.to(device) for t in self))


def draw(n: int, resolution: int, probability: float, generator: torch.Generator) -> AugmentParams:
    """Draw one batch of augmentation parameters. Always consumes the same amount of randomness."""
    enable = torch.rand(n, 3, generator=generator) < probability
    color = torch.rand(n, 3, generator=generator)
    shift = int(resolution * TRANSLATION_RATIO + 0.5)
    translation = torch.randint(-shift, shift + 1, (n, 2), generator=generator)
    size = int(resolution * CUTOUT_RATIO + 0.5)
    cutout = torch.randint(0, resolution + (1 - size % 2), (n, 2), generator=generator) - size // 2
    return AugmentParams(enable, color, translation, cutout)


def apply(x: torch.Tensor, params: AugmentParams, ops=("color", "translation", "cutout")) -> torch.Tensor:
    """Augment images x [NCHW] in [-1, 1]; differentiable with respect to x."""
    n, _, h, w = x.shape
    enable = params.enable.to(x.dtype)
    if "color" in ops:
        on = enable[:, 0, None, None, None]
        b, s, c = (params.color[:, i, None, None, None].to(x.dtype) for i in range(3))
        y = x + (b - 0.5)
        mean = y.mean(dim=1, keepdim=True)
        y = (y - mean) * (s * 2) + mean
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * (c + 0.5) + mean
        x = on * y + (1 - on) * x
    if "translation" in ops:
        x = _translate(x, params.translation * params.enable[:, 1:2].long())  # disabled samples shift by 0
    if "cutout" in ops:
        size = int(h * CUTOUT_RATIO + 0.5)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        x0 = params.cutout[:, 0, None, None]
        y0 = params.cutout[:, 1, None, None]
        inside = (xs >= x0) & (xs < x0 + size) & (ys >= y0) & (ys < y0 + size)  # [N, H, W]
        keep = 1 - (inside & params.enable[:, 2, None, None]).to(x.dtype)
        x = x * keep[:, None]
    return x


def _shift_matrix(shift: torch.Tensor, size: int, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[N, size, size] one-hot rows: row i picks source i - shift, or is zero where that falls outside."""
    src = torch.arange(size, device=x.device)[None, :] - shift.to(x.device)[:, None]  # [N, size]
    return (src[:, :, None] == torch.arange(size, device=x.device)[None, None, :]).to(dtype)


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels (shift [N, 2]: x, y), zeros filling the border.

    Two one-hot matrix products: exact (each output is 1 * one input plus zeros), double-differentiable
    (R1 differentiates D's input gradient through this; grid_sample's backward has no derivative on CUDA)
    and deterministic on CUDA, where a gather's backward sums with atomics in a varying order. Autocast is
    off and CUDA computes in float64 so that neither bf16 nor TF32 (which a host application may enable)
    rounds the pixels; a CPU has no TF32, and float32 is 2x faster there than float64.
    """
    dtype = torch.float64 if x.is_cuda else torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        rows = _shift_matrix(shift[:, 1], x.shape[2], x, dtype)[:, None]  # [N, 1, H, H]
        cols = _shift_matrix(shift[:, 0], x.shape[3], x, dtype)[:, None]  # [N, 1, W, W]
        return (rows @ x.to(dtype) @ cols.transpose(-1, -2)).to(x.dtype)


def update_probability(p: float, real_logits: torch.Tensor, cfg: AugmentConfig) -> float:
    """ADA heuristic: r = E[sign(D(real))]; raise p when r > target (D overfits), lower it otherwise."""
    r = float(torch.sign(real_logits.detach()).mean())
    return min(max(p + (cfg.speed if r > cfg.target else -cfg.speed), 0.0), 1.0)
