"""Seeds to generators: every random draw of the engine comes from a CPU `torch.Generator` made here.

`latents(seed, start, count)` draws z in fixed blocks of `LATENT_BLOCK`, block b of seed s seeded from
(s, b) alone, so image i of seed s is the same whatever the device, the chunk size or the count.
`derived_generator(seed, step, slot, ...)` seeds a generator from a tuple of integers, so a run resumed
at step s draws what the uninterrupted run drew there.
"""
from __future__ import annotations

import torch

from .errors import ConfigError

LATENT_BLOCK = 256
MAX_SEED = 2 ** 64 - 1
MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One round of SplitMix64: a well-mixed 64-bit integer from any 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def check_seed(seed: int) -> int:
    """`seed` if it is an integer in 0..2**64-1, else `ConfigError`."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed {seed!r} must be an integer in 0..{MAX_SEED}")
    return seed


def derived_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (seed, step, slot, ...)."""
    x = 0
    for k in keys:
        x = splitmix64(x ^ (int(k) & MASK64))
    return torch.Generator().manual_seed(x)


def latents(seed: int, start: int, count: int, z_dim: int) -> torch.Tensor:
    """Latents of images start..start+count-1 of `seed`.

    Args:
        seed: an integer in 0..2**64-1.
        start: index of the first image.
        count: number of images.
        z_dim: latent size.
    Returns:
        [count, z_dim] float32 on the CPU.
    """
    check_seed(seed)
    if start < 0 or count < 0:
        raise ConfigError(f"start {start} and count {count} must be non-negative")
    out = torch.empty(count, z_dim)
    i = 0
    while i < count:
        block, offset = divmod(start + i, LATENT_BLOCK)
        gen = torch.Generator().manual_seed(splitmix64(seed ^ splitmix64(block)))
        z = torch.randn(LATENT_BLOCK, z_dim, generator=gen)
        take = min(LATENT_BLOCK - offset, count - i)
        out[i:i + take] = z[offset:offset + take]
        i += take
    return out
