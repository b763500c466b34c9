"""Seeded sampling and interpolation, one implementation (`Sampler`) for the reference and fast paths.

Latents come from `seeding.latents`, drawn on the CPU, so image i of seed s is the same whatever the
device, the chunk size or the count.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ConfigError
from .fastpath import FastPath, autocast_bf16, memory_format, resolve
from .model import MetaGAN
from .networks import build_generator
from .seeding import latents

MAX_RESULT_BYTES = 8 << 30  # one returned batch; larger requests are refused, not attempted
PINNED_OUTPUT_LIMIT = 1 << 30  # bytes: larger outputs of a CUDA sampler go to ordinary (pageable) CPU memory
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0x5EED  # fixed: the truncation centre belongs to the model, not to the user's seed


def check_truncation(truncation: float) -> float:
    if not isinstance(truncation, (int, float)) or not 0.0 <= truncation <= 2.0:
        raise ConfigError(f"truncation {truncation!r} must be in [0, 2]: 1 is no truncation, lower values trade "
                          "variety for typical images")
    return float(truncation)


def check_count(count: int, resolution: int) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"count {count!r} must be a positive integer")
    needed = count * 3 * resolution ** 2 * 4
    if needed > MAX_RESULT_BYTES:
        raise ConfigError(f"{count} images at {resolution}px need {needed / 2**30:.1f} GiB as one tensor: ask for "
                          f"at most {MAX_RESULT_BYTES // (3 * resolution ** 2 * 4)} per call and use `start` "
                          "to continue the same seed's stream")
    return count


@torch.no_grad()
def w_average(model: MetaGAN) -> torch.Tensor:
    """Centre of w-space for truncation: the mean w of a fixed latent set ([w_dim]; a dcgan's w is its 4x4 input
    features, [channels(4) * 16])."""
    z = latents(W_AVG_SEED, 0, W_AVG_SAMPLES, model.config.generator.z_dim).to(model.device)
    return model.G.mapping(z).mean(dim=0)


def default_chunk(resolution: int) -> int:
    return max(1, (1 << 20) // (resolution * resolution))  # 256 at 64 px, 16 at 256 px


class Sampler:
    """Seeded sampling of one model, reusable (keep one to reuse its CUDA graphs and its w average).

    Args:
        model: the model to sample; build a new sampler after changing its weights (with `channels_last`
            the sampler holds its own copy of G).
        fast: speed features (`FastPath`); None is the reference configuration. On CUDA with `cuda_graph`
            each chunk size is captured the first time it is met and replayed after; outputs go to pinned
            CPU memory up to `PINNED_OUTPUT_LIMIT`.

    Example:
        >>> sampler = Sampler(model, FastPath())
        >>> images = sampler.sample(seed=7, count=1024, chunk_size=1024)  # [1024, 3, R, R] in 0..1, CPU
    """

    def __init__(self, model: MetaGAN, fast: FastPath | None = None):
        self.model = model
        self.fast = resolve(fast, model.device)
        if self.fast.channels_last:
            with torch.device("meta"):
                G = build_generator(model.config.generator)
            G.load_state_dict({k: v.detach().clone(memory_format=memory_format(v, True))
                               for k, v in model.G.state_dict().items()}, assign=True)
            self.G = G.requires_grad_(False).eval()
        else:
            self.G = model.G
        self._w_avg: torch.Tensor | None = None
        self._graphs: dict[tuple[int, float], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def w_average(self) -> torch.Tensor:
        if self._w_avg is None:
            self._w_avg = w_average(self.model).clone()
        return self._w_avg

    def _truncate(self, w: torch.Tensor, truncation: float) -> torch.Tensor:
        if truncation == 1.0:
            return w
        w_avg = self.w_average()
        return w_avg + truncation * (w - w_avg)

    def _render(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] (`G.mapping`'s output) on the device -> images [N, 3, R, R] fp32 in 0..1 on the device."""
        with autocast_bf16(self.fast.bf16_sample, w.device.type):
            img = self.G.synthesis(w)
        return img.float().add(1).mul(0.5).clamp(0, 1)

    def _forward(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        return self._render(self._truncate(self.G.mapping(z), truncation))  # mapping stays fp32 (MappingNetwork)

    def _graph_chunk(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        dev = self.model.device
        key = (z.shape[0], truncation)
        if key in self._graphs:
            graph, static_z, static_out = self._graphs[key]
            static_z.copy_(z)
            graph.replay()
            return static_out
        static_z = z.to(dev).clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self._forward(static_z, truncation)  # warm-up: this call's result
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_z, truncation)
        self._graphs[key] = (graph, static_z, static_out)
        return out

    def _chunk(self, z: torch.Tensor, truncation: float, out: torch.Tensor, non_blocking: bool) -> None:
        """Images for z [b, z_dim] (CPU) into out [b, 3, R, R] (CPU), `sample_batch` images per G call."""
        dev = self.model.device
        if self.fast.cuda_graph:
            out.copy_(self._graph_chunk(z, truncation), non_blocking=non_blocking)
            return
        step = self.fast.sample_batch
        for j in range(0, z.shape[0], step):
            out[j:j + step].copy_(self._forward(z[j:j + step].to(dev), truncation), non_blocking=non_blocking)

    @torch.no_grad()
    def synthesize(self, z: torch.Tensor, truncation: float = 1.0, chunk_size: int | None = None,
                   on_chunk: Callable[[int, int], None] | None = None,
                   w_avg: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents z [N, z_dim], in chunks.

        Args:
            z: latents (any device; see `seeding.latents`).
            truncation: 1 is none; lower values pull w toward the model's average w.
            chunk_size: images per chunk (progress and cancel granularity); default by resolution.
            on_chunk: `on_chunk(done, total)` after each chunk; raise from it to cancel.
            w_avg: the truncation centre, if already computed (default: `w_average(model)`).
        Returns:
            [N, 3, R, R] float32 in 0..1 on the CPU.
        """
        truncation = check_truncation(truncation)
        if truncation != 1.0:  # before any graph capture: w_average runs the mapping and copies to the device
            if w_avg is not None:
                self._w_avg = w_avg.to(self.model.device).clone()
            self.w_average()
        res = self.model.resolution
        chunk = chunk_size or default_chunk(res)
        n = z.shape[0]
        cuda = self.model.device.type == "cuda"
        pinned = cuda and n * 3 * res * res * 4 <= PINNED_OUTPUT_LIMIT
        out = torch.empty(n, 3, res, res, pin_memory=pinned)
        for i in range(0, n, chunk):
            self._chunk(z[i:i + chunk], truncation, out[i:i + chunk], pinned)
            if on_chunk is not None:
                on_chunk(min(i + chunk, n), n)
        if cuda:
            torch.cuda.current_stream(self.model.device).synchronize()
        return out

    def sample(self, seed: int, count: int, truncation: float = 1.0, *, start: int = 0,
               chunk_size: int | None = None, on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Images start..start+count-1 of `seed`: [count, 3, R, R] float32 in 0..1 on the CPU."""
        check_count(count, self.model.resolution)
        z = latents(seed, start, count, self.model.config.generator.z_dim)
        return self.synthesize(z, truncation, chunk_size, on_chunk)

    @torch.no_grad()
    def interpolate(self, seed_a: int, seed_b: int, frames: int, truncation: float = 1.0,
                    space: str = "w") -> torch.Tensor:
        """Frames from image 0 of `seed_a` to image 0 of `seed_b`: [frames, 3, R, R] float32 in 0..1, CPU.

        space "w": linear in w (smooth, the default); space "z": spherical in z.
        """
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 2:
            raise ConfigError(f"frames {frames!r} must be an integer of at least 2")
        if space not in ("w", "z"):
            raise ConfigError(f"interpolation space {space!r} must be 'w' or 'z'")
        truncation = check_truncation(truncation)
        z_dim = self.model.config.generator.z_dim
        za, zb = latents(seed_a, 0, 1, z_dim)[0], latents(seed_b, 0, 1, z_dim)[0]
        t = torch.linspace(0.0, 1.0, frames)
        chunk = default_chunk(self.model.resolution)
        if space == "z":
            return self.synthesize(slerp(za, zb, t), truncation, chunk)
        dev = self.model.device
        out = torch.empty(frames, 3, self.model.resolution, self.model.resolution)
        wa, wb = self.G.mapping(torch.stack([za, zb]).to(dev))
        for i in range(0, frames, chunk):
            tt = t[i:i + chunk].to(dev)[:, None]
            out[i:i + chunk] = self._render(self._truncate(wa[None] + tt * (wb - wa)[None], truncation)).cpu()
        return out


def synthesize(model: MetaGAN, z: torch.Tensor, truncation: float = 1.0, chunk_size: int | None = None,
               on_chunk: Callable[[int, int], None] | None = None, w_avg: torch.Tensor | None = None,
               fast: FastPath | None = None) -> torch.Tensor:
    """`Sampler(model, fast).synthesize(...)`: images in 0..1, [N, 3, R, R] float32 on the CPU."""
    return Sampler(model, fast).synthesize(z, truncation, chunk_size, on_chunk, w_avg)


def sample(model: MetaGAN, seed: int, count: int, truncation: float = 1.0, *, start: int = 0,
           chunk_size: int | None = None, on_chunk: Callable[[int, int], None] | None = None,
           fast: FastPath | None = None) -> torch.Tensor:
    """`count` images of `seed` (images start..start+count-1).

    Args:
        model: the model to sample.
        seed: an integer in 0..2**64-1; image i of a seed is the same whatever the count or chunking.
        count: how many images (at most what fits `MAX_RESULT_BYTES`).
        truncation: 1 is none; lower values trade variety for typical images.
        start: index of the first image in the seed's stream.
        chunk_size, on_chunk: progress and cancel granularity; `on_chunk(done, total)` may raise.
        fast: speed features (`FastPath`); None is the reference configuration.
    Returns:
        [count, 3, R, R] float32 in 0..1 on the CPU.
    """
    return Sampler(model, fast).sample(seed, count, truncation, start=start, chunk_size=chunk_size, on_chunk=on_chunk)


def interpolate(model: MetaGAN, seed_a: int, seed_b: int, frames: int, truncation: float = 1.0,
                space: str = "w") -> torch.Tensor:
    """`Sampler(model).interpolate(...)`: [frames, 3, R, R] float32 in 0..1 on the CPU."""
    return Sampler(model).interpolate(seed_a, seed_b, frames, truncation, space)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows a and b [D] at fractions t [F] -> [F, D]."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return a[None] + t[:, None] * (b - a)[None]
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a[None] + (torch.sin(t * omega) / so)[:, None] * b[None]
