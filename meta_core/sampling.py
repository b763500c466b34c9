"""Seeded sampling and interpolation.

Latents come from CPU generators in fixed blocks of `LATENT_BLOCK`, block b of seed s seeded from
(s, b) alone, so image i of seed s is the same whatever the device, the chunk size or the count.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from .errors import ConfigError
from .model import MetaGAN

if TYPE_CHECKING:
    from .fast import FastPath

LATENT_BLOCK = 256
MAX_RESULT_BYTES = 8 << 30  # one returned batch; larger requests are refused, not attempted
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0x5EED  # fixed: the truncation centre belongs to the model, not to the user's seed
MAX_SEED = 2 ** 64 - 1
MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed {seed!r} must be an integer in 0..{MAX_SEED}")
    return seed


def latents(seed: int, start: int, count: int, z_dim: int) -> torch.Tensor:
    """z for images start..start+count-1 of `seed`: [count, z_dim] float32 on the CPU."""
    check_seed(seed)
    if start < 0 or count < 0:
        raise ConfigError(f"start {start} and count {count} must be non-negative")
    out = torch.empty(count, z_dim)
    i = 0
    while i < count:
        block, offset = divmod(start + i, LATENT_BLOCK)
        gen = torch.Generator().manual_seed(_splitmix64(seed ^ _splitmix64(block)))
        z = torch.randn(LATENT_BLOCK, z_dim, generator=gen)
        take = min(LATENT_BLOCK - offset, count - i)
        out[i:i + take] = z[offset:offset + take]
        i += take
    return out


def check_truncation(truncation: float) -> float:
    if not isinstance(truncation, (int, float)) or not 0.0 <= truncation <= 2.0:
        raise ConfigError(f"truncation {truncation!r} must be in [0, 2]: 1 is no truncation, lower values trade "
                          "variety for typical images")
    return float(truncation)


@torch.no_grad()
def w_average(model: MetaGAN) -> torch.Tensor:
    """Centre of w-space for truncation: the mean w of a fixed latent set. [w_dim]"""
    z = latents(W_AVG_SEED, 0, W_AVG_SAMPLES, model.config.generator.z_dim).to(model.device)
    return model.G.mapping(z).mean(dim=0)


def default_chunk(resolution: int) -> int:
    return max(1, (1 << 20) // (resolution * resolution))  # 256 at 64 px, 16 at 256 px


@torch.no_grad()
def synthesize(model: MetaGAN, z: torch.Tensor, truncation: float = 1.0, chunk_size: int | None = None,
               on_chunk: Callable[[int, int], None] | None = None, w_avg: torch.Tensor | None = None,
               fast: FastPath | None = None) -> torch.Tensor:
    """Images in [0, 1], [N, 3, R, R] float32 on the CPU, for latents z [N, z_dim], in chunks.

    `fast`: None (default) is this reference path; a `fast.FastPath` runs `fast.FastSampler` for this call
    (keep a `FastSampler` yourself to reuse its CUDA graphs across calls).
    """
    if fast is not None:
        from .fast import FastSampler
        return FastSampler(model, fast).synthesize(z, truncation, chunk_size, on_chunk, w_avg)
    truncation = check_truncation(truncation)
    chunk = chunk_size or default_chunk(model.resolution)
    if truncation != 1.0 and w_avg is None:
        w_avg = w_average(model)
    n = z.shape[0]
    out = torch.empty(n, 3, model.resolution, model.resolution)
    for i in range(0, n, chunk):
        w = model.G.mapping(z[i:i + chunk].to(model.device))
        if truncation != 1.0:
            w = w_avg + truncation * (w - w_avg)
        out[i:i + chunk] = model.G.synthesis(w).float().cpu()
        if on_chunk is not None:
            on_chunk(min(i + chunk, n), n)
    return out.add_(1).mul_(0.5).clamp_(0, 1)


def sample(model: MetaGAN, seed: int, count: int, truncation: float = 1.0, *, start: int = 0,
           chunk_size: int | None = None, on_chunk: Callable[[int, int], None] | None = None,
           fast: FastPath | None = None) -> torch.Tensor:
    """`count` images of `seed` (images start..start+count-1): [count, 3, R, R] in [0, 1] on the CPU.

    `on_chunk(done, total)` runs after each chunk and may raise to cancel. `fast`: see `synthesize`.
    """
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"count {count!r} must be a positive integer")
    needed = count * 3 * model.resolution ** 2 * 4
    if needed > MAX_RESULT_BYTES:
        raise ConfigError(f"{count} images at {model.resolution}px need {needed / 2**30:.1f} GiB as one tensor: ask for "
                          f"at most {MAX_RESULT_BYTES // (3 * model.resolution ** 2 * 4)} per call and use `start` "
                          "to continue the same seed's stream")
    z = latents(seed, start, count, model.config.generator.z_dim)
    return synthesize(model, z, truncation, chunk_size, on_chunk, fast=fast)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows a and b [D] at fractions t [F] -> [F, D]."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return a[None] + t[:, None] * (b - a)[None]
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a[None] + (torch.sin(t * omega) / so)[:, None] * b[None]


@torch.no_grad()
def interpolate(model: MetaGAN, seed_a: int, seed_b: int, frames: int, truncation: float = 1.0,
                space: str = "w") -> torch.Tensor:
    """Frames from image 0 of `seed_a` to image 0 of `seed_b`: [frames, 3, R, R] in [0, 1].

    space "w": linear in w (smooth, the default); space "z": spherical in z.
    """
    if not isinstance(frames, int) or frames < 2:
        raise ConfigError(f"frames {frames!r} must be an integer of at least 2")
    if space not in ("w", "z"):
        raise ConfigError(f"interpolation space {space!r} must be 'w' or 'z'")
    truncation = check_truncation(truncation)
    z_dim = model.config.generator.z_dim
    za, zb = latents(seed_a, 0, 1, z_dim)[0], latents(seed_b, 0, 1, z_dim)[0]
    t = torch.linspace(0.0, 1.0, frames)
    w_avg = w_average(model) if truncation != 1.0 else None
    chunk = default_chunk(model.resolution)
    if space == "z":
        return synthesize(model, slerp(za, zb, t), truncation, chunk, w_avg=w_avg)
    out = torch.empty(frames, 3, model.resolution, model.resolution)
    wa, wb = model.G.mapping(torch.stack([za, zb]).to(model.device))
    for i in range(0, frames, chunk):
        tt = t[i:i + chunk].to(model.device)[:, None]
        w = wa[None] + tt * (wb - wa)[None]
        if w_avg is not None:
            w = w_avg + truncation * (w - w_avg)
        out[i:i + chunk] = model.G.synthesis(w).float().cpu()
    return out.add_(1).mul_(0.5).clamp_(0, 1)
