"""Stand-in for ``comfy.utils``: the progress bar, its global hook, and ``common_upscale``.

Mirrors ComfyUI v0.3.64:

- ``ProgressBar(total, node_id=None)`` with ``update(value)`` (relative) and
  ``update_absolute(value, total=None, preview=None)``; values above ``total`` are clamped. The
  bar takes the global hook that is set *when it is created* and calls it as
  ``hook(value, total, preview, node_id=node_id)``.
- ``set_progress_bar_global_hook(fn)`` sets that hook; ComfyUI's server uses it to send progress to
  the browser, the headless runner to print progress (and to stop on Ctrl-C).
- ``common_upscale(samples, width, height, upscale_method, crop)`` on ``[N, C, H, W]`` tensors
  (extra dimensions between C and H are folded into the batch), with ``crop`` ``"disabled"`` or
  ``"center"`` and the methods ``nearest-exact``, ``bilinear``, ``area``, ``bicubic`` and
  ``lanczos``. ComfyUI's ``bislerp`` (a latent-space method) is not provided and raises
  ``NotImplementedError``.

Nothing else of ``comfy.utils`` (checkpoint loading, tiled scaling ...) exists here.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function) -> None:
    """Set the function every new ``ProgressBar`` reports to (None to stop reporting)."""
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    """Progress of one long step inside a node: ``total`` units, reported through the global hook."""

    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize NCHW images in 0..1 with PIL's Lanczos filter (8-bit round trip, as ComfyUI does)."""
    out = []
    for image in samples:
        array = np.clip(255.0 * image.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
        resized = Image.fromarray(array).resize((width, height), resample=Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.array(resized).astype(np.float32) / 255.0)
        out.append(tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def _center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str) -> torch.Tensor:
    """Resize ``samples`` to ``height`` x ``width``, optionally centre-cropping to the new aspect first.

    ``samples`` is ``[N, C, H, W]``; for ``[N, C, T..., H, W]`` (video latents) every extra
    dimension is folded into the batch and restored afterwards, as ComfyUI does.
    """
    if upscale_method == "bislerp":
        raise NotImplementedError("common_upscale: 'bislerp' is not available in the ComfyUI stubs; "
                                  "use 'bilinear' or run inside ComfyUI.")
    shape = tuple(samples.shape)
    flat = samples
    if len(shape) > 4:
        n, c = shape[0], shape[1]
        flat = samples.reshape(n, c, -1, shape[-2], shape[-1]).movedim(2, 1).reshape(-1, c, shape[-2], shape[-1])
    if crop == "center":
        flat = _center_crop(flat, width, height)
    if upscale_method == "lanczos":
        out = lanczos(flat, width, height)
    else:
        out = torch.nn.functional.interpolate(flat, size=(height, width), mode=upscale_method)
    if len(shape) == 4:
        return out
    out = out.reshape(shape[0], -1, shape[1], height, width).movedim(2, 1)
    return out.reshape(shape[:-2] + (height, width))
