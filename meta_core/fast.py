"""Fast paths for adaptation, sampling and meta-training, each beside its plain reference path.

Nothing here runs unless asked for: `adapt(..., fast=FastPath())`, `sample(..., fast=FastPath())` (or a
reusable `FastSampler`), `MetaTrainer(..., fast=FastPath())`. Without `fast` the reference code runs
unchanged. `tests/test_fast.py` checks every fast path against its reference path within stated tolerances.

What `FastPath()` turns on (fields left `None` choose what helps on the model's device):

| option          | CPU (auto) | CUDA (auto) | what it does |
|-----------------|------------|-------------|--------------|
| `channels_last` | on         | on          | NHWC conv weights, references and activations |
| `foreach`       | on         | on          | in-place multi-tensor Adam (`torch._foreach_*`), op for op the arithmetic of `adam_update` |
| `bf16_sample`   | off        | on          | sampling: bf16 autocast for G's synthesis; mapping and the toRGB skip sum stay fp32 |
| `bf16_train`    | off        | off         | adaptation and meta-training: bf16 autocast for G and D (losses, R1 sum, Adam in fp32) |
| `cuda_graph`    | CUDA only  | on          | the adaptation step (one graph with R1, one without) and sampling chunks replay captured CUDA graphs |
| `vmap_tasks`    | off        | on          | meta-training: the tasks of a rank's meta-batch adapt together, G and D called through `torch.func.vmap` |
| `check_every`   | 1          | collapse-check interval | adaptation: steps between host syncs for the finiteness check |

Sampling on a CPU also runs G on `CPU_SAMPLE_BATCH` images at a time, whatever the chunk size (a chunk
sets progress and cancel granularity; the pieces keep activations in cache).

Measured on a 2-core Xeon (1 thread): channels_last halves G's forward time and saves ~10 % of an adaptation
step; `vmap_tasks` makes a meta-step ~15 % slower there (vmap turns per-task weights into grouped
convolutions, which oneDNN runs slower than separate ones), so a CPU adapts a meta-batch's tasks one after
another with `FastInnerLoop`. On CUDA vmap cuts the kernel launches of a meta-batch by its task count.
bf16 may be asked for explicitly on a CPU too (CPU autocast; worth it on CPUs with AMX or AVX512-BF16).
`bf16_train` is off by default: an adaptation step at batch 8 is bound by kernel count and latency, not
arithmetic, so bf16 buys little there, while it moves the adapted model's images by about 5-10 % of what
adaptation itself changes (measured with CPU autocast; see tests/test_fast.py for the tolerances).

Semantics kept from the reference path:
- Randomness: all of it is drawn on the CPU from the caller's generator(s), in the reference order
  (`draw_step_noise` per step; per task from the task's own generator in meta-training).
- Rollback: a step with a non-finite loss or gradient is discarded, as on the reference path. The fast
  path checks once per window of `check_every` steps (a snapshot of the trainable weights and Adam
  state is taken at the window start); when a window holds a bad step it is restored and re-run one
  step at a time with the reference's per-step rule, so the outcome (which steps count, `rollbacks`,
  the `max_rollbacks` error) is the reference's. Window ends always include the collapse-check steps.
- `on_step` is called for every step, after the window holding it has finished; the `preview` it gets
  shows the weights at the end of that window. Cancelling (raising) takes effect within one window.
- Adaptive augmentation (ADA) needs each step's result before drawing the next step's noise, so it
  runs with windows of one step.
- The model passed in is never modified; adapted weights come back in the ordinary (contiguous) layout.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch.func import functional_call, vmap

from . import augment, losses
from .adapt import AdaptStats, InnerLoop, StepCallback, StepNoise, diverged_error, draw_step_noise
from .config import AdaptConfig
from .errors import ConfigError, TrainingDivergedError
from .model import MetaGAN, Params
from .networks import Generator

CPU_FEATURES = ("channels_last", "foreach")                     # what the auto setting turns on everywhere ...
CUDA_FEATURES = ("bf16_sample", "cuda_graph", "vmap_tasks")     # ... and in addition on CUDA
PINNED_OUTPUT_LIMIT = 1 << 30  # bytes: larger sampling outputs go to ordinary (pageable) CPU memory
CPU_SAMPLE_BATCH = 32  # images per G call when sampling on a CPU (measured: 1.5-2x the throughput of 256 or 1024)


@dataclass(frozen=True)
class FastPath:
    """Which fast-path features to use. `None` means: what helps on the device (see the module docstring).

    Asking for `cuda_graph=True` on another device raises `ConfigError` rather than quietly running
    something else.

    Example:
        >>> adapted = adapt(model, refs, seed=0, fast=FastPath()).model
        >>> images = sample(adapted, seed=1, count=16, fast=FastPath())
    """
    bf16_sample: bool | None = None    # sampling: bf16 autocast for the synthesis network
    bf16_train: bool | None = None     # adaptation and meta-training: bf16 autocast for G and D
    channels_last: bool | None = None  # NHWC weights and activations
    foreach: bool = True               # in-place multi-tensor Adam
    cuda_graph: bool | None = None     # captured CUDA graphs for adaptation steps and sampling chunks (CUDA only)
    vmap_tasks: bool | None = None     # meta-training: vmap the inner loops of a meta-batch's tasks together
    check_every: int | None = None     # adaptation: steps per finiteness check (None: 1 on CPU, collapse interval on CUDA)

    def __post_init__(self):
        if self.check_every is not None and (not isinstance(self.check_every, int) or self.check_every < 1):
            raise ConfigError(f"check_every {self.check_every!r} must be a positive integer or None")

    def resolve(self, device) -> "FastPath":
        """The concrete settings for `device` (every field but `check_every` set to True or False)."""
        device = torch.device(device)
        cuda = device.type == "cuda"

        def pick(name: str, value, cuda_only: bool) -> bool:
            if value is None:
                return name in CPU_FEATURES or (cuda and name in CUDA_FEATURES)
            if value and cuda_only and not cuda:
                raise ConfigError(f"fast path option {name}=True needs a CUDA device, not {device}: leave it unset "
                                  f"(None) to use what helps on {device.type}")
            return bool(value)

        return replace(self,
                       bf16_sample=pick("bf16_sample", self.bf16_sample, False),
                       bf16_train=pick("bf16_train", self.bf16_train, False),
                       channels_last=pick("channels_last", self.channels_last, False),
                       cuda_graph=pick("cuda_graph", self.cuda_graph, True),
                       vmap_tasks=pick("vmap_tasks", self.vmap_tasks, False),
                       check_every=self.check_every if self.check_every is not None else (None if cuda else 1))

    def describe(self) -> str:
        on = [name for name in ("bf16_sample", "bf16_train", "channels_last", "foreach", "cuda_graph", "vmap_tasks")
              if getattr(self, name)]
        every = "collapse-check interval" if self.check_every is None else self.check_every
        return f"{'+'.join(on) or 'nothing'}; finiteness check every {every} step(s)"


# --- small helpers -------------------------------------------------------------------------------------

def _tree_map(fn, *trees):
    """Map over tensors in (nested) NamedTuples such as `StepNoise`."""
    first = trees[0]
    if isinstance(first, tuple):
        return type(first)(*(_tree_map(fn, *items) for items in zip(*trees)))
    return fn(*trees)


def _layout(t: torch.Tensor, channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last and t.dim() == 4 else torch.contiguous_format


def autocast_bf16(enabled: bool, device_type: str):
    """bf16 autocast (weight cache off, so it is safe inside CUDA-graph capture), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


def adam_step_(params: list[torch.Tensor], grads: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor],
               step_size, bc2_sqrt, betas, eps: float = 1e-8, foreach: bool = True) -> None:
    """Adam in place: `adapt.adam_update`'s arithmetic, op for op, on lists of tensors.

    step_size = lr / (1 - b1**t) and bc2_sqrt = sqrt(1 - b2**t): Python floats, or 0-dim tensors on the
    params' device (what a CUDA graph needs, since its scalars are fixed at capture).
    """
    if not params:
        return
    b1, b2 = betas
    if foreach:
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, torch._foreach_mul(grads, 1 - b1))
        torch._foreach_mul_(v, b2)
        sq = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(sq, 1 - b2)
        torch._foreach_add_(v, sq)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_mul(m, step_size)
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(params, update)
        return
    for p, g, mi, vi in zip(params, grads, m, v):
        mi.mul_(b1).add_(g * (1 - b1))
        vi.mul_(b2).add_(g * g * (1 - b2))
        p.sub_(mi * step_size / (vi.sqrt() / bc2_sqrt + eps))


def adam_scalars(cfg: AdaptConfig, steps: int) -> torch.Tensor:
    """[steps + 1, 4] float32: (lr_d / bc1, bc2_sqrt, lr_g / bc1, bc2_sqrt) for Adam step t in row t,
    computed in float64 on the host exactly as `adam_update` does (row 0 unused)."""
    b1, b2 = cfg.betas
    rows = [[0.0, 1.0, 0.0, 1.0]]
    for t in range(1, steps + 1):
        bc1, bc2_sqrt = 1 - b1 ** t, math.sqrt(1 - b2 ** t)
        rows.append([cfg.lr_d / bc1, bc2_sqrt, cfg.lr_g / bc1, bc2_sqrt])
    return torch.tensor(rows, dtype=torch.float64).float()


# --- single-task adaptation ------------------------------------------------------------------------------

class _RunState:
    """The static buffers of one fast adaptation run (CUDA graphs read and write these addresses)."""

    def __init__(self, loop: "FastInnerLoop", g: Params, d: Params, real: torch.Tensor, steps: int):
        cl, cfg = loop.fast.channels_last, loop.cfg
        dev = real.device
        self.g = {n: t.detach().clone(memory_format=_layout(t, cl)) for n, t in g.items()}
        self.d = {n: t.detach().clone(memory_format=_layout(t, cl)) for n, t in d.items()}
        self.real = real.contiguous(memory_format=torch.channels_last) if cl else real
        self.g_train = [self.g[n] for n in loop.g_names]
        self.d_train = [self.d[n] for n in loop.d_names]
        self.m_g = [torch.zeros_like(t) for t in self.g_train]
        self.v_g = [torch.zeros_like(t) for t in self.g_train]
        self.m_d = [torch.zeros_like(t) for t in self.d_train]
        self.v_d = [torch.zeros_like(t) for t in self.d_train]
        self.scalars = adam_scalars(cfg, steps).to(dev)
        self.noise_idx = torch.zeros(1, dtype=torch.long, device=dev)  # the step being run
        self.adam_t = torch.zeros(1, dtype=torch.long, device=dev)     # accepted steps so far
        self.metrics = torch.zeros(steps, 4, device=dev)               # d_loss, g_loss, r1, grad_sq
        self.logits = torch.zeros(steps, cfg.batch_size, device=dev)   # real logits (for ADA)
        self.noise: StepNoise | None = None                            # [steps, ...] per field, on dev
        self._saved: dict[str, list[torch.Tensor]] = {}
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self.warmed: set[bool] = set()

    @property
    def state(self) -> list[torch.Tensor]:
        return [*self.g_train, *self.d_train, *self.m_g, *self.v_g, *self.m_d, *self.v_d, self.adam_t]

    def save(self, slot: str) -> None:
        if slot not in self._saved:
            self._saved[slot] = [t.clone() for t in self.state]
        else:
            torch._foreach_copy_(self._saved[slot], self.state)

    def restore(self, slot: str) -> None:
        torch._foreach_copy_(self.state, self._saved[slot])


class FastInnerLoop(InnerLoop):
    """`InnerLoop` on the fast path: the same gradients (`d_grads`, `g_grads`), applied in place to static
    buffers with foreach Adam, in channels_last, optionally in bf16, and on CUDA replayed from CUDA graphs.

    Example:
        >>> g, d, stats = FastInnerLoop(model, cfg, FastPath()).run(g, d, real, generator)
    """

    def __init__(self, model: MetaGAN, cfg: AdaptConfig, fast: FastPath | None = None):
        super().__init__(model, cfg)
        self.fast = (fast or FastPath()).resolve(model.device)

    def _r1_at(self, step: int) -> bool:
        return self.cfg.loss.r1_gamma > 0 and step % self.cfg.loss.r1_interval == 0

    def _step(self, st: _RunState, step_index: int) -> None:
        """One D step then one G step, in place. Reads its noise at `noise_idx` and its Adam scalars at
        `adam_t + 1`; writes its metrics at `noise_idx`; advances both counters. No host sync."""
        cfg, fast = self.cfg, self.fast
        idx = st.noise_idx
        noise = _tree_map(lambda t: t.index_select(0, idx).squeeze(0), st.noise)
        sc = st.scalars.index_select(0, st.adam_t + 1).squeeze(0)
        with autocast_bf16(fast.bf16_train, idx.device.type):
            grads_d, metrics = self.d_grads(st.g, st.d, st.real, noise, step_index, self.d_names)
        gd = [grads_d[n] for n in self.d_names]
        adam_step_(st.d_train, gd, st.m_d, st.v_d, sc[0], sc[1], cfg.betas, foreach=fast.foreach)
        with autocast_bf16(fast.bf16_train, idx.device.type):
            grads_g, g_loss = self.g_grads(st.g, st.d, noise, self.g_names, st.real.device)
        gg = [grads_g[n] for n in self.g_names]
        adam_step_(st.g_train, gg, st.m_g, st.v_g, sc[2], sc[3], cfg.betas, foreach=fast.foreach)
        norms = torch._foreach_norm(gd + gg) if (gd or gg) else [torch.zeros((), device=idx.device)]
        grad_sq = torch.stack([n.float() for n in norms]).square().sum()
        row = torch.stack([metrics["d_loss"].float(), g_loss.float(), metrics["r1"].float(), grad_sq])
        st.metrics.index_copy_(0, idx, row[None])
        st.logits.index_copy_(0, idx, metrics["real_logits"].float()[None])
        st.noise_idx.add_(1)
        st.adam_t.add_(1)

    def _launch(self, st: _RunState, step: int) -> None:
        """Run step `step`: eagerly, or from its CUDA graph (warm up on a side stream the first time a
        kind of step (with or without R1) is met, capture the second time, replay from then on)."""
        if not self.fast.cuda_graph:
            self._step(st, step)
            return
        kind = self._r1_at(step)
        graph = st.graphs.get(kind)
        if graph is None:
            if kind not in st.warmed:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self._step(st, step)
                torch.cuda.current_stream().wait_stream(side)
                st.warmed.add(kind)
                return
            graph = torch.cuda.CUDAGraph()  # its own memory pool: the two graphs replay in any order
            with torch.cuda.graph(graph):
                self._step(st, step)  # recorded, not run
            st.graphs[kind] = graph
        graph.replay()

    def run(self, g: Params, d: Params, real: torch.Tensor, generator: torch.Generator,
            on_step: StepCallback | None = None) -> tuple[Params, Params, AdaptStats]:
        """`InnerLoop.run` on the fast path; see the module docstring for what differs (when checks happen)."""
        cfg, fast = self.cfg, self.fast
        steps = cfg.steps
        gcfg = self.model.config.generator
        collapse_every = max(1, steps // 4)
        adaptive = cfg.augment.adaptive
        check_every = 1 if adaptive else (fast.check_every or collapse_every)
        p = cfg.augment.probability
        stats = AdaptStats(aug_probability=p)
        start = time.perf_counter()
        st = _RunState(self, g, d, real, steps)
        dev = real.device

        def draw() -> StepNoise:
            return draw_step_noise(generator, real.shape[0], cfg.batch_size, gcfg.z_dim, gcfg.resolution, p)

        if adaptive:  # each step's noise depends on the previous step's p: drawn step by step below
            first = draw()
            st.noise = _tree_map(lambda t: torch.zeros((steps, *t.shape), dtype=t.dtype, device=dev), first)
            pending = first
        else:  # the very draws of the reference loop, in its order, all at once
            noises = [draw() for _ in range(steps)]
            st.noise = _tree_map(lambda *ts: torch.stack(ts).to(dev), *noises)
            pending = None

        consecutive = 0
        step = 0
        while step < steps:
            end = step
            while (end + 1) % check_every and (end + 1) % collapse_every and end + 1 < steps:
                end += 1
            if adaptive:  # one-step windows
                noise = pending if pending is not None else draw()
                pending = None
                _tree_map(lambda buf, t: buf[step].copy_(t), st.noise, noise)
            st.save("window")
            for k in range(step, end + 1):
                self._launch(st, k)
            values = st.metrics[step:end + 1].cpu()  # the one host sync of the window
            finite = torch.isfinite(values).all(dim=1)
            if bool(finite.all()):
                accepted = [True] * (end + 1 - step)
                consecutive = 0
            else:  # redo the window one step at a time with the reference's per-step rule
                st.restore("window")
                st.noise_idx.fill_(step)
                accepted = []
                for k in range(step, end + 1):
                    if end > step:
                        st.save("step")
                        self._launch(st, k)
                        row = st.metrics[k].cpu()
                    else:  # a one-step window: its outcome is known and its state already restored
                        row = values[0]
                        st.noise_idx.fill_(k + 1)
                    if bool(torch.isfinite(row).all()):
                        accepted.append(True)
                        consecutive = 0
                    else:
                        if end > step:
                            st.restore("step")  # noise_idx stays advanced: the next step draws its own noise
                        accepted.append(False)
                        stats.rollbacks += 1
                        consecutive += 1
                        if consecutive > cfg.max_rollbacks:
                            raise diverged_error(consecutive, k + 1, cfg)
                    values[k - step] = row
            for k in range(step, end + 1):
                if adaptive and accepted[k - step]:
                    p = augment.update_probability(p, st.logits[k].cpu(), cfg.augment)
                stats.steps = k + 1
                if stats.steps % collapse_every == 0 or stats.steps == steps:
                    self.check_not_collapsed(st.g, stats.steps)
                d_loss, g_loss, r1, _ = (float(x) for x in values[k - step])
                stats.d_loss.append(d_loss)
                stats.g_loss.append(g_loss)
                stats.r1.append(r1)
                stats.aug_probability = p
                if on_step is not None:
                    on_step(k + 1, steps, {
                        "d_loss": d_loss, "g_loss": g_loss, "r1": r1, "rollbacks": stats.rollbacks,
                        "aug_probability": p, "preview": lambda z: self.preview(st.g, z.to(dev)),
                    })
            step = end + 1
        g_out = {n: t.contiguous() for n, t in st.g.items()}
        d_out = {n: t.contiguous() for n, t in st.d.items()}
        stats.seconds = time.perf_counter() - start
        return g_out, d_out, stats


# --- sampling --------------------------------------------------------------------------------------------

class FastSampler:
    """Seeded sampling on the fast path, reusable: keep one per model to reuse its CUDA graphs.

    Holds its own copy of G's weights when `channels_last` is on (build a new sampler after changing the
    model's weights). On CUDA each chunk size is warmed up and captured the first time it is met (that call
    still returns its images) and replayed after; the output goes to pinned CPU memory up to
    `PINNED_OUTPUT_LIMIT`. Latents are the reference path's (`sampling.latents`), so image i of a seed is
    the reference's image i within the tolerance of the chosen features.

    Example:
        >>> sampler = FastSampler(model)
        >>> images = sampler.sample(seed=7, count=1024, chunk_size=1024)  # [1024, 3, R, R] in 0..1, CPU
    """

    def __init__(self, model: MetaGAN, fast: FastPath | None = None):
        self.model = model
        self.fast = (fast or FastPath()).resolve(model.device)
        if self.fast.channels_last:
            with torch.device("meta"):
                G = Generator(model.config.generator)
            G.load_state_dict({k: v.detach().clone(memory_format=_layout(v, True))
                               for k, v in model.G.state_dict().items()}, assign=True)
            self.G = G.requires_grad_(False).eval()
        else:
            self.G = model.G
        self._w_avg: torch.Tensor | None = None
        self._graphs: dict[tuple[int, float], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def w_average(self) -> torch.Tensor:
        if self._w_avg is None:
            from .sampling import w_average
            self._w_avg = w_average(self.model).clone()
        return self._w_avg

    def _forward(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        """z [N, z_dim] on the device -> images [N, 3, R, R] fp32 in 0..1 on the device."""
        w = self.G.mapping(z)  # fp32 even under autocast (see MappingNetwork)
        if truncation != 1.0:
            w_avg = self.w_average()
            w = w_avg + truncation * (w - w_avg)
        with autocast_bf16(self.fast.bf16_sample, z.device.type):
            img = self.G.synthesis(w)
        return img.float().add(1).mul(0.5).clamp(0, 1)

    def _chunk(self, z: torch.Tensor, truncation: float, out: torch.Tensor, non_blocking: bool) -> None:
        """Images for z [b, z_dim] (CPU) into out [b, 3, R, R] (CPU)."""
        dev = self.model.device
        if dev.type == "cpu":  # cache-sized pieces: a CPU runs G fastest a few dozen images at a time
            for j in range(0, z.shape[0], CPU_SAMPLE_BATCH):
                out[j:j + CPU_SAMPLE_BATCH] = self._forward(z[j:j + CPU_SAMPLE_BATCH], truncation)
            return
        images = self._graph_chunk(z, truncation) if self.fast.cuda_graph else self._forward(z.to(dev), truncation)
        out.copy_(images, non_blocking=non_blocking)

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

    @torch.no_grad()
    def synthesize(self, z: torch.Tensor, truncation: float = 1.0, chunk_size: int | None = None,
                   on_chunk: Callable[[int, int], None] | None = None, w_avg: torch.Tensor | None = None) -> torch.Tensor:
        """`sampling.synthesize` on the fast path: images in [0, 1], [N, 3, R, R] float32 on the CPU."""
        from .sampling import check_truncation, default_chunk
        truncation = check_truncation(truncation)
        if truncation != 1.0:  # before any graph capture: w_average runs the mapping and copies to the device
            cached = self.w_average()
            if w_avg is not None:
                cached.copy_(w_avg)
        dev = self.model.device
        res = self.model.resolution
        chunk = chunk_size or default_chunk(res)
        n = z.shape[0]
        cuda = dev.type == "cuda"
        pinned = cuda and n * 3 * res * res * 4 <= PINNED_OUTPUT_LIMIT
        out = torch.empty(n, 3, res, res, pin_memory=pinned)
        for i in range(0, n, chunk):
            self._chunk(z[i:i + chunk], truncation, out[i:i + chunk], pinned)
            if on_chunk is not None:
                on_chunk(min(i + chunk, n), n)
        if cuda:
            torch.cuda.current_stream(dev).synchronize()
        return out

    def sample(self, seed: int, count: int, truncation: float = 1.0, *, start: int = 0,
               chunk_size: int | None = None, on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """`sampling.sample` on the fast path: `count` images of `seed`, [count, 3, R, R] in [0, 1] on the CPU."""
        from .sampling import latents
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"count {count!r} must be a positive integer")
        z = latents(seed, start, count, self.model.config.generator.z_dim)
        return self.synthesize(z, truncation, chunk_size, on_chunk)


# --- meta-training: the inner loops of several tasks at once --------------------------------------------

class BatchedInnerLoop:
    """`InnerLoop.run` for T tasks at once, all starting from the same weights.

    Parameters are stacked along a leading task dimension and G and D run through `torch.func.vmap`
    (so minibatch-std stays per task); one autograd pass serves every task, since the gradient of the sum
    of independent task losses is each task's own gradient (R1's double backward included). Task j draws
    its noise from its own generator exactly as `InnerLoop.run` does; rollbacks, `max_rollbacks`, ADA
    and the collapse checks are per task, with the reference's rules. A task that fails comes back as its
    `TrainingDivergedError` (the sequential trainer catches the same error).
    """

    def __init__(self, model: MetaGAN, cfg: AdaptConfig, fast: FastPath | None = None):
        self.model, self.cfg = model, cfg
        self.fast = (fast or FastPath()).resolve(model.device)
        self.loop = InnerLoop(model, cfg)  # names, augmentation ops and the collapse check
        G, D = model.G, model.D
        self._G = vmap(lambda p, z: functional_call(G, p, (z,)))
        self._D = vmap(lambda p, x: functional_call(D, p, (x,)))

    def _augment(self, x: torch.Tensor, params: augment.AugmentParams) -> torch.Tensor:
        """x [T, B, C, R, R] with params [T, B, ...]: the reference's per-sample augmentation."""
        if not self.loop.ops:
            return x
        t, b = x.shape[:2]
        flat = augment.AugmentParams(*(p.reshape(t * b, *p.shape[2:]).to(x.device) for p in params))
        return augment.apply(x.reshape(t * b, *x.shape[2:]), flat, self.loop.ops).reshape(x.shape)

    @staticmethod
    def _adam(params: dict, grads: dict, m: dict, v: dict, step_size: torch.Tensor, bc2_sqrt: torch.Tensor,
              betas, eps: float = 1e-8):
        """`adam_update` on stacked tensors with per-task scalars [T] (tasks may have accepted different
        numbers of steps). Returns (new params, new m, new v) for the names in `grads`."""
        b1, b2 = betas
        new_p, new_m, new_v = {}, {}, {}
        with torch.no_grad():
            for name, g in grads.items():
                shape = (-1,) + (1,) * (g.dim() - 1)
                mi = m[name] * b1 + g * (1 - b1)
                vi = v[name] * b2 + g * g * (1 - b2)
                new_p[name] = params[name] - step_size.view(shape) * mi / (vi.sqrt() / bc2_sqrt.view(shape) + eps)
                new_m[name], new_v[name] = mi, vi
        return new_p, new_m, new_v

    def run(self, g: Params, d: Params, reals: list[torch.Tensor], generators: list[torch.Generator]):
        """Adapt (g, d) to each task's images reals[j] [K_j, 3, R, R] in [-1, 1], drawing from generators[j].

        Returns one entry per task: (g_j, d_j, AdaptStats) or the task's TrainingDivergedError.
        """
        cfg, fast = self.cfg, self.fast
        loop = self.loop
        T = len(reals)
        dev = reals[0].device
        gcfg = self.model.config.generator
        B = cfg.batch_size
        collapse_every = max(1, cfg.steps // 4)
        b1, b2 = cfg.betas
        stack = lambda t: t.detach().unsqueeze(0).repeat(T, *([1] * t.dim()))
        g = {n: stack(t) for n, t in g.items()}
        d = {n: stack(t) for n, t in d.items()}
        m_g = {n: torch.zeros_like(g[n]) for n in loop.g_names}
        v_g = {n: torch.zeros_like(g[n]) for n in loop.g_names}
        m_d = {n: torch.zeros_like(d[n]) for n in loop.d_names}
        v_d = {n: torch.zeros_like(d[n]) for n in loop.d_names}
        real_all = torch.cat(reals)
        offsets = [0]
        for r in reals[:-1]:
            offsets.append(offsets[-1] + r.shape[0])
        p = [cfg.augment.probability] * T
        stats = [AdaptStats(aug_probability=p[j]) for j in range(T)]
        adam_t = [0] * T
        consecutive = [0] * T
        failed: list[TrainingDivergedError | None] = [None] * T
        start = time.perf_counter()
        for step in range(cfg.steps):
            noises = [draw_step_noise(generators[j], reals[j].shape[0], B, gcfg.z_dim, gcfg.resolution, p[j])
                      for j in range(T)]
            noise = _tree_map(lambda *ts: torch.stack(ts).to(dev), *noises)  # [T, B, ...] per field
            index = torch.stack([n.real_index + off for n, off in zip(noises, offsets)]).to(dev)
            scal = torch.tensor([[cfg.lr_d / (1 - b1 ** (t + 1)), math.sqrt(1 - b2 ** (t + 1)),
                                  cfg.lr_g / (1 - b1 ** (t + 1))] for t in adam_t], dtype=torch.float64).float().to(dev)
            # D step (fakes are constants), as InnerLoop.d_grads
            d_train = {n: d[n].detach().requires_grad_(True) for n in loop.d_names}
            d_all = {**d, **d_train}
            with autocast_bf16(fast.bf16_train, dev.type):
                with torch.no_grad():
                    fake = self._G(g, noise.z_d)
                real_b = real_all[index]
                do_r1 = cfg.loss.r1_gamma > 0 and step % cfg.loss.r1_interval == 0
                if do_r1:
                    real_b = real_b.detach().requires_grad_(True)
                real_logits = self._D(d_all, self._augment(real_b, noise.aug_real))
                fake_logits = self._D(d_all, self._augment(fake, noise.aug_fake_d))
                loss_d = vmap(lambda r, f: losses.d_loss(r, f, cfg.loss.kind))(real_logits, fake_logits)
                r1 = torch.zeros(T, device=dev)
                total = loss_d
                if do_r1:
                    (grad,) = torch.autograd.grad(real_logits.sum(), real_b, create_graph=True)
                    r1 = grad.square().sum(dim=(2, 3, 4)).mean(dim=1)
                    total = loss_d + r1 * (cfg.loss.r1_gamma / 2 * cfg.loss.r1_interval)
                grads_d = dict(zip(d_train, torch.autograd.grad(total.sum(), list(d_train.values())))) if d_train else {}
            d_new, m_d_new, v_d_new = self._adam(d, grads_d, m_d, v_d, scal[:, 0], scal[:, 1], cfg.betas)
            d_next = {**d, **d_new}
            # G step against the updated D, as InnerLoop.g_grads
            g_train = {n: g[n].detach().requires_grad_(True) for n in loop.g_names}
            with autocast_bf16(fast.bf16_train, dev.type):
                fake = self._G({**g, **g_train}, noise.z_g)
                loss_g = vmap(lambda f: losses.g_loss(f, cfg.loss.kind))(
                    self._D(d_next, self._augment(fake, noise.aug_fake_g)))
                grads_g = dict(zip(g_train, torch.autograd.grad(loss_g.sum(), list(g_train.values())))) if g_train else {}
            g_new, m_g_new, v_g_new = self._adam(g, grads_g, m_g, v_g, scal[:, 2], scal[:, 1], cfg.betas)
            grad_sq = torch.zeros(T, device=dev)
            for t in (*grads_d.values(), *grads_g.values()):
                grad_sq = grad_sq + t.float().square().flatten(1).sum(dim=1)
            values = torch.stack([loss_d.detach().float(), loss_g.detach().float(), r1.detach().float(), grad_sq],
                                 dim=1).cpu()
            ok = torch.isfinite(values).all(dim=1)
            accept = [bool(ok[j]) and failed[j] is None for j in range(T)]
            for j in range(T):
                if failed[j] is not None:
                    continue
                if accept[j]:
                    adam_t[j] += 1
                    consecutive[j] = 0
                    if cfg.augment.adaptive:
                        p[j] = augment.update_probability(p[j], real_logits[j].detach(), cfg.augment)
                else:
                    stats[j].rollbacks += 1
                    consecutive[j] += 1
                    if consecutive[j] > cfg.max_rollbacks:
                        failed[j] = diverged_error(consecutive[j], step + 1, cfg)
            mask = torch.tensor(accept, device=dev)
            keep = lambda new, old: torch.where(mask.view((-1,) + (1,) * (old.dim() - 1)), new, old)
            with torch.no_grad():
                for n in grads_d:
                    d[n], m_d[n], v_d[n] = keep(d_new[n], d[n]), keep(m_d_new[n], m_d[n]), keep(v_d_new[n], v_d[n])
                for n in grads_g:
                    g[n], m_g[n], v_g[n] = keep(g_new[n], g[n]), keep(m_g_new[n], m_g[n]), keep(v_g_new[n], v_g[n])
            for j in range(T):
                if failed[j] is not None:
                    continue
                stats[j].steps = step + 1
                if stats[j].steps % collapse_every == 0 or stats[j].steps == cfg.steps:
                    try:
                        loop.check_not_collapsed({n: t[j] for n, t in g.items()}, stats[j].steps)
                    except TrainingDivergedError as exc:
                        failed[j] = exc
                        continue
                stats[j].d_loss.append(float(values[j, 0]))
                stats[j].g_loss.append(float(values[j, 1]))
                stats[j].r1.append(float(values[j, 2]))
                stats[j].aug_probability = p[j]
        seconds = time.perf_counter() - start
        out = []
        for j in range(T):
            if failed[j] is not None:
                out.append(failed[j])
                continue
            stats[j].seconds = seconds
            out.append(({n: t[j] for n, t in g.items()}, {n: t[j] for n, t in d.items()}, stats[j]))
        return out


def batched_task_contributions(trainer, step: int, slots: list[int], plan: list[int]):
    """`MetaTrainer.task_contribution` for several slots at once through `BatchedInnerLoop`.

    Returns, in slot order, (G contribution, D contribution, stats) or the slot's TrainingDivergedError.
    """
    from .meta import derived_generator
    gens, supports, queries = [], [], []
    for slot in slots:
        gen = derived_generator(trainer.cfg.seed, step, slot)
        support, query = trainer.task_batch(plan[slot], gen)
        gens.append(gen)
        supports.append(support)
        queries.append(query)
    batched = BatchedInnerLoop(trainer.model, trainer.cfg.inner, trainer.fast)
    results = batched.run(trainer.theta_g, trainer.theta_d, supports, gens)
    out = []
    for result, gen, query in zip(results, gens, queries):
        if isinstance(result, TrainingDivergedError):
            out.append(result)
            continue
        g, d, stats = result
        out.append(trainer.contribution(g, d, stats, query, gen))
    return out


__all__ = ["FastPath", "FastInnerLoop", "FastSampler", "BatchedInnerLoop", "adam_step_", "adam_scalars",
           "autocast_bf16", "batched_task_contributions"]
