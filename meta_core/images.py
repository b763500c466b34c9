"""Reference images: any count, size and channel layout in, a clean [K, 3, R, R] batch in 0..1 out; image grids."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .errors import ReferenceImageError

MAX_REFERENCES = 64
MIN_SIDE = 8
RANGE_TOLERANCE = 1e-3


def to_square(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop [C, H, W] to a square and resize it (antialiased) to `resolution`."""
    _, h, w = img.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[:, top:top + side, left:left + side]
    if side != resolution:
        img = F.interpolate(img[None], size=(resolution, resolution), mode="bilinear", align_corners=False,
                            antialias=side > resolution)[0]
    return img


def composite(img: torch.Tensor, background=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """[C, H, W] with C in 1..4 (gray, gray+alpha, RGB, RGBA) in 0..1 -> RGB, alpha over `background`."""
    c = img.shape[0]
    if c in (2, 4):
        color, alpha = img[:-1], img[-1:]
        bg = torch.tensor(background, dtype=img.dtype, device=img.device)[:, None, None]
        if c == 2:
            color = color.expand(3, -1, -1)
        return color * alpha + bg * (1 - alpha)
    return img.expand(3, -1, -1) if c == 1 else img


def prepare_references(images: torch.Tensor | Sequence[torch.Tensor], resolution: int,
                       background=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """Validate and convert reference images for adaptation.

    Args:
        images: a tensor [K, C, H, W] or a list of [C, H, W] tensors (sizes may differ), values in 0..1,
            C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). Integer tensors are read as 0..255
            (uint8) or 0..65535 (int32 holding 16-bit data).
        resolution: the model's resolution.
        background: RGB in 0..1 under transparent pixels.
    Returns:
        [K, 3, resolution, resolution] float32 in 0..1, on the device of the input.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4:
            raise ReferenceImageError(f"reference images must be [K, C, H, W], got shape {tuple(images.shape)}")
        images = list(images)
    images = list(images)
    if not images:
        raise ReferenceImageError("no reference images were given: pass at least one image of the character")
    if len(images) > MAX_REFERENCES:
        raise ReferenceImageError(f"{len(images)} reference images were given; adaptation takes at most "
                                  f"{MAX_REFERENCES}: pick a representative subset")
    out = []
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise ReferenceImageError(f"reference image {i} must be a [C, H, W] tensor")
        c, h, w = img.shape
        if c not in (1, 2, 3, 4):
            raise ReferenceImageError(f"reference image {i} has {c} channels: give gray, gray+alpha, RGB or RGBA")
        if min(h, w) < MIN_SIDE:
            raise ReferenceImageError(f"reference image {i} is {w}x{h} pixels: use images of at least "
                                      f"{MIN_SIDE}x{MIN_SIDE}")
        if not img.is_floating_point():
            scale = 255.0 if img.dtype == torch.uint8 else 65535.0
            img = img.float() / scale
        img = img.float()
        lo, hi = (float(v) for v in torch.aminmax(img))  # one pass, no mask: NaN propagates, inf shows
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ReferenceImageError(f"reference image {i} contains NaN or infinite values: check the node or "
                                      "file that produced it")
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ReferenceImageError(f"reference image {i} has values in [{lo:.3g}, {hi:.3g}]; expected 0..1: "
                                      "rescale it (ComfyUI IMAGE tensors are already 0..1)")
        if lo < 0 or hi > 1:  # within tolerance; an 8192x8192 image in range is not copied
            img = img.clamp(0, 1)
        img = to_square(composite(img, background), resolution)
        out.append(img.clamp(0, 1))
    return torch.stack(out)


def tile(rows: Sequence[torch.Tensor], pad: int = 2, fill: float = 1.0, columns: int | None = None) -> torch.Tensor:
    """Rows of [N_i, 3, R, R] images -> one [3, H, W] sheet, rows top to bottom, `pad` pixels of `fill` around
    each tile; `columns` (default: the longest row) fixes the width, longer rows are cut."""
    res = rows[0].shape[-1]
    cols = columns or max(r.shape[0] for r in rows)
    out = torch.full((3, len(rows) * (res + pad) + pad, cols * (res + pad) + pad), fill)
    for i, row in enumerate(rows):
        for j, img in enumerate(row[:cols]):
            y, x = pad + i * (res + pad), pad + j * (res + pad)
            out[:, y:y + res, x:x + res] = img
    return out
