"""The GAN inner loop, once: adaptation, meta-training's tasks and their fast configurations all run it.

Weights live in dicts of tensors and the networks run through `torch.func.functional_call`; the model
passed in is never mutated. Each step draws all of its randomness up front on the CPU
(`draw_step_noise`), then runs one D step and one G step (`GANStep`, which pretraining shares).
What the speed features change (layout, multi-tensor Adam, CUDA graphs, several tasks through `vmap`,
bf16, how often the host checks for non-finite values) is a `FastPath` configuration of this loop;
`fast=None` is the reference configuration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple
from collections.abc import Callable

import torch
from torch.func import functional_call, vmap

from . import augment, losses
from .config import AdaptConfig
from .errors import ConfigError, TrainingDivergedError
from .fastpath import FastPath, autocast_bf16, memory_format, resolve
from .model import MetaGAN, Params
from .optim import adam_, scalar_table
from .seeding import latents

COLLAPSE_SEED = 0xC011A95E  # fixed latents for the collapse check, independent of the run's seed
COLLAPSE_SAMPLES = 8
COLLAPSE_STD = 2e-3         # mean per-pixel std across samples (images in [-1, 1]) below which G has collapsed


class StepNoise(NamedTuple):
    """Every random draw of one inner step, in draw order."""
    real_index: torch.Tensor             # [B] indices into the references, with replacement
    z_d: torch.Tensor                    # [B, z_dim] latents for the D step
    aug_real: augment.AugmentParams      # for the reals (D step)
    aug_fake_d: augment.AugmentParams    # for the fakes (D step)
    z_g: torch.Tensor                    # [B, z_dim] latents for the G step
    aug_fake_g: augment.AugmentParams    # for the fakes (G step)


def draw_step_noise(generator: torch.Generator, num_refs: int, batch: int, z_dim: int, resolution: int,
                    probability: float) -> StepNoise:
    real_index = torch.randint(0, num_refs, (batch,), generator=generator)
    z_d = torch.randn(batch, z_dim, generator=generator)
    aug_real = augment.draw(batch, resolution, probability, generator)
    aug_fake_d = augment.draw(batch, resolution, probability, generator)
    z_g = torch.randn(batch, z_dim, generator=generator)
    aug_fake_g = augment.draw(batch, resolution, probability, generator)
    return StepNoise(real_index, z_d, aug_real, aug_fake_d, z_g, aug_fake_g)


class Anchors(NamedTuple):
    """Each reference's anchor latent and the reference, [(T,) K, ...]; stacked tasks with fewer references repeat
    their own to the longest task's K, and `weight` [T, K] (None: a plain mean) counts each reference once."""
    z: torch.Tensor
    real: torch.Tensor
    weight: torch.Tensor | None


def stack_anchors(zs: list[torch.Tensor], reals: list[torch.Tensor], device) -> Anchors:
    k = max(r.shape[0] for r in reals)
    index = [torch.arange(k) % r.shape[0] for r in reals]
    weight = torch.stack([torch.where(torch.arange(k) < r.shape[0], 1.0 / r.shape[0], 0.0) for r in reals])
    return Anchors(torch.stack([z[i] for z, i in zip(zs, index)]).to(device),
                   torch.stack([r[i.to(r.device)] for r, i in zip(reals, index)]), weight.to(device))


def tree_map(fn, *trees):
    """Map over the tensors of (nested) NamedTuples such as `StepNoise`."""
    first = trees[0]
    if isinstance(first, tuple):
        return type(first)(*(tree_map(fn, *items) for items in zip(*trees)))
    return fn(*trees)


def trainable_names(model: MetaGAN, cfg: AdaptConfig) -> tuple[list[str], list[str]]:
    """Which G and D parameters a strategy trains."""
    g_all = [n for n, _ in model.G.named_parameters()]
    d_all = [n for n, _ in model.D.named_parameters()]
    if cfg.strategy == "full":
        return g_all, d_all
    frozen_d = set(model.D.frozen_parameter_names(cfg.freeze_d_blocks))
    d_train = [n for n in d_all if n not in frozen_d]
    if cfg.strategy == "modulation":
        return model.G.modulation_parameter_names(), d_train
    return g_all, d_train  # freeze_d


def diverged_error(consecutive: int, step: int, cfg: AdaptConfig) -> TrainingDivergedError:
    """The error for `consecutive` non-finite steps in a row ending at (1-based) `step`."""
    return TrainingDivergedError(
        f"adaptation diverged: {consecutive} steps in a row gave non-finite losses (at step "
        f"{step}); lower the learning rate (lr_g={cfg.lr_g}, lr_d={cfg.lr_d}) or use the "
        "'freeze_d' or 'modulation' strategy")


def sample_diversity(model: MetaGAN, g: Params) -> float:
    """Mean per-pixel std across a few fixed samples of G with weights `g`: ~0 means one image for every z."""
    z = latents(COLLAPSE_SEED, 0, COLLAPSE_SAMPLES, model.config.generator.z_dim).to(model.device)
    with torch.no_grad():
        return float(functional_call(model.G, g, (z,)).std(dim=0).mean())


@dataclass
class AdaptStats:
    """What one adaptation run did: steps, rolled-back steps, per-step losses, the final ADA probability."""
    steps: int = 0
    rollbacks: int = 0
    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    r1: list[float] = field(default_factory=list)
    aug_probability: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        def last(xs):
            return xs[-1] if xs else float("nan")
        return {"steps": self.steps, "rollbacks": self.rollbacks, "d_loss": last(self.d_loss),
                "g_loss": last(self.g_loss), "aug_probability": self.aug_probability, "seconds": self.seconds}


@dataclass(frozen=True)
class StepProgress:
    """What `on_step` receives after each adaptation step."""
    step: int                # steps done (1-based)
    total: int               # steps in the run
    d_loss: float
    g_loss: float
    r1: float
    rollbacks: int           # steps rolled back so far
    aug_probability: float
    model: MetaGAN = field(repr=False)   # the model being adapted (unchanged; its G runs functionally)
    weights: Params = field(repr=False)  # G's current weights: read them during the callback

    @torch.no_grad()
    def preview(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the current weights for latents z [N, z_dim]: [N, 3, R, R] float32 in 0..1 on the CPU."""
        img = functional_call(self.model.G, self.weights, (z.to(self.model.device),))
        return img.float().cpu().add(1).mul(0.5).clamp(0, 1)


StepCallback = Callable[[StepProgress], None]


class GANStep:
    """The gradients of one D step and one G step: non-saturating (or minimax) loss, lazy R1, DiffAugment.

    `stacked=True` takes weights stacked along a leading task dimension (G and D then run through `vmap`,
    so minibatch-std stays per task; losses come back per task). One autograd pass serves every task: the
    gradient of a sum of independent task losses is each task's own gradient (R1's double backward too).
    """

    def __init__(self, model: MetaGAN, cfg: AdaptConfig, stacked: bool = False, channels_last: bool = False):
        self.model, self.cfg, self.stacked = model, cfg, stacked
        self.ops = cfg.augment.ops if cfg.augment.enabled else ()
        G, D = model.G, model.D
        # frozen tensors (a projected D's features) in the layout the trained weights use
        d_buffers = {n: b.contiguous(memory_format=memory_format(b, channels_last)) for n, b in D.named_buffers()}

        def g_call(p, z):
            return functional_call(G, p, (z,))

        def g_features(p, z):
            return functional_call(G, p, (z,), {"features": True})

        def d_call(p, x):
            return functional_call(D, {**d_buffers, **p}, (x,))

        self.generate = vmap(g_call) if stacked else g_call
        self.generate_features = vmap(g_features) if stacked else g_features
        self.discriminate = vmap(d_call) if stacked else d_call

    def augment(self, x: torch.Tensor, params: augment.AugmentParams) -> torch.Tensor:
        """The per-sample augmentation of x [B, C, R, R] (or [T, B, C, R, R] with params [T, B, ...])."""
        if not self.ops:
            return x
        if x.dim() == 4:
            return augment.apply(x, params.to(x.device), self.ops)
        lead = x.dim() - 3
        flat = augment.AugmentParams(*(p.reshape(-1, *p.shape[lead:]).to(x.device) for p in params))
        return augment.apply(x.reshape(-1, *x.shape[lead:]), flat, self.ops).reshape(x.shape)

    def d_grads(self, g: Params, d: Params, real: torch.Tensor, noise: StepNoise, do_r1: bool, names: list[str]):
        """D loss (+ R1 when `do_r1`, scaled for its interval) on the real batch `real` and its gradients
        for `names`. Returns (grads, {"d_loss", "r1", "real_logits"})."""
        cfg, dev = self.cfg, real.device
        d_train = {n: d[n].detach().requires_grad_(True) for n in names}
        d_all = {**d, **d_train}
        with torch.no_grad():
            fake = self.generate(g, noise.z_d.to(dev))  # fakes are constants in the D step
        if do_r1:
            real = real.detach().requires_grad_(True)
        real_logits = self.discriminate(d_all, self.augment(real, noise.aug_real))
        fake_logits = self.discriminate(d_all, self.augment(fake, noise.aug_fake_d))
        loss = losses.d_loss(real_logits, fake_logits)
        r1 = torch.zeros(loss.shape, device=dev)
        total = loss
        if do_r1:
            r1 = losses.r1_penalty(real_logits, real)
            total = loss + r1 * (cfg.loss.r1_gamma / 2 * cfg.loss.r1_interval)
        grads = dict(zip(d_train, torch.autograd.grad(total.sum(), list(d_train.values())))) if d_train else {}
        return grads, {"d_loss": loss.detach(), "r1": r1.detach(), "real_logits": real_logits.detach()}

    def g_grads(self, g: Params, d: Params, noise: StepNoise, names: list[str], device, source: Params | None = None,
                anchors: Anchors | None = None):
        """G loss against D (held constant) and its gradients for `names`. With `source` (G's weights before
        adaptation, which the inner loop keeps only when `cfg.cdc_weight` > 0) the loss adds distance consistency
        to the source's samples of the same latents. With `anchors` (`cfg.anchor_weight` > 0) it adds the anchor
        samples' L1 distance to their references; they run through G in the adversarial samples' batch, after them.
        Returns (grads, the adversarial loss)."""
        g_train = {n: g[n].detach().requires_grad_(True) for n in names}
        z = noise.z_g.to(device)
        batch = z.shape[-2]
        z_all = torch.cat([z, anchors.z], dim=-2) if anchors is not None else z
        cdc = source is not None
        if cdc:
            fake, maps = self.generate_features({**g, **g_train}, z_all)
            if anchors is not None:
                maps = [m[..., :batch, :, :, :] for m in maps]
            with torch.no_grad():
                _, source_maps = self.generate_features(source, z)
        else:
            fake = self.generate({**g, **g_train}, z_all)
        if anchors is not None:
            fake, fake_anchor = fake[..., :batch, :, :, :], fake[..., batch:, :, :, :]
        loss = losses.g_loss(self.discriminate(d, self.augment(fake, noise.aug_fake_g)), self.cfg.loss.kind)
        total = loss + self.cfg.cdc_weight * losses.distance_consistency(source_maps, maps) if cdc else loss
        if anchors is not None:
            total = total + self.cfg.anchor_weight * losses.anchor_l1(fake_anchor, anchors.real, anchors.weight)
        grads = dict(zip(g_train, torch.autograd.grad(total.sum(), list(g_train.values())))) if g_train else {}
        return grads, loss.detach()

    def r1_at(self, step: int) -> bool:
        return self.cfg.loss.r1_gamma > 0 and step % self.cfg.loss.r1_interval == 0


class _RunState:
    """The buffers of one run, updated in place (CUDA graphs read and write these addresses).

    Stacked runs hold T tasks along a leading dimension of every weight, moment and counter.
    """

    def __init__(self, loop: InnerLoop, g: Params, d: Params, reals: list[torch.Tensor], steps: int):
        cfg, dev = loop.cfg, reals[0].device
        self.tasks = len(reals)
        self.stacked = loop.stacked
        cl = loop.fast.channels_last and not self.stacked  # under vmap every weight stays contiguous

        def own(t: torch.Tensor) -> torch.Tensor:
            t = t.detach()
            if self.stacked:
                return t.unsqueeze(0).repeat(self.tasks, *([1] * t.dim()))
            return t.clone(memory_format=memory_format(t, cl))

        self.g = {n: own(t) for n, t in g.items()}
        self.d = {n: own(t) for n, t in d.items()}
        real = torch.cat(reals) if len(reals) > 1 else reals[0]
        self.real = real.contiguous(memory_format=torch.channels_last) if cl else real
        sizes = torch.tensor([0] + [r.shape[0] for r in reals[:-1]])
        self.offsets = sizes.cumsum(0).to(dev)  # [T] first image of each task in `real`
        self.g_train = [self.g[n] for n in loop.g_names]
        # EMA of G's trained weights (StyleGAN's G_ema, per step): what the run returns, previews and checks
        self.ema = [t.clone() for t in self.g_train] if cfg.ema_half_life > 0 else []
        self.g_out = {**self.g, **dict(zip(loop.g_names, self.ema))}
        # G as it was (what distance consistency compares with); untrained tensors are shared, never written
        self.g_source = {**self.g, **{n: self.g[n].clone() for n in loop.g_names}} if cfg.cdc_weight > 0 else None
        self.anchors: Anchors | None = None  # set by the run when anchor_weight > 0
        self.d_train = [self.d[n] for n in loop.d_names]
        self.m_g = [torch.zeros_like(t) for t in self.g_train]
        self.v_g = [torch.zeros_like(t) for t in self.g_train]
        self.m_d = [torch.zeros_like(t) for t in self.d_train]
        self.v_d = [torch.zeros_like(t) for t in self.d_train]
        self.scalars = scalar_table((cfg.lr_d, cfg.lr_g), cfg.betas, steps).to(dev)  # [steps + 1, 4]
        self.noise_idx = torch.zeros(1, dtype=torch.long, device=dev)          # the step being run
        self.adam_t = torch.zeros(self.tasks, dtype=torch.long, device=dev)    # accepted steps per task
        self.metrics = torch.zeros(steps, self.tasks, 4, device=dev)           # d_loss, g_loss, r1, grad_sq
        self.logits = torch.zeros(steps, self.tasks, cfg.batch_size, device=dev)  # real logits (for ADA)
        self.noise: StepNoise | None = None   # [steps, (T,) B, ...] per field, on the device
        self._saved: dict[str, list[torch.Tensor]] = {}
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self.warmed: set[bool] = set()

    @property
    def state(self) -> list[torch.Tensor]:
        return [*self.g_train, *self.ema, *self.d_train, *self.m_g, *self.v_g, *self.m_d, *self.v_d, self.adam_t]

    def weights(self, task: int) -> Params:
        """G's output weights of one task (the EMA where it is on; views, not copies)."""
        return {n: t[task] for n, t in self.g_out.items()} if self.stacked else self.g_out

    def save(self, slot: str) -> None:
        if slot not in self._saved:
            self._saved[slot] = [t.clone() for t in self.state]
        else:
            torch._foreach_copy_(self._saved[slot], self.state)

    def restore(self, slot: str, tasks: torch.Tensor | None = None) -> None:
        """Back to the saved state: all of it, or (stacked runs) only the tasks where `tasks` [T] is True."""
        if tasks is None or not self.stacked:
            torch._foreach_copy_(self.state, self._saved[slot])
            return
        mask = tasks.to(self.adam_t.device)
        for t, saved in zip(self.state, self._saved[slot]):
            t.copy_(torch.where(mask.view((-1,) + (1,) * (t.dim() - 1)), saved, t))


class InnerLoop:
    """One GAN adaptation run over a fixed set of real images (or several tasks' runs at once).

    Args:
        model: supplies the networks and the resolution; its weights are not used (pass them to `run`).
        cfg: steps, learning rates, batch, strategy, augmentation, loss.
        fast: `FastPath` features (None: the reference configuration). With `vmap_tasks`, `run_tasks`
            adapts its tasks together through `vmap`; otherwise one after another.

    Example:
        >>> g, d, stats = InnerLoop(model, cfg).run(model.g_params(), model.d_params(), real, generator)
    """

    def __init__(self, model: MetaGAN, cfg: AdaptConfig, fast: FastPath | None = None):
        self.model, self.cfg = model, cfg
        self.fast = resolve(fast, model.device)
        self.g_names, self.d_names = trainable_names(model, cfg)
        self.stacked = bool(self.fast.vmap_tasks)
        self.gan = GANStep(model, cfg, stacked=self.stacked, channels_last=self.fast.channels_last and not self.stacked)
        self.single = self.gan if not self.stacked else GANStep(model, cfg)

    # --- one step, on the device, no host sync ---------------------------------------------------------

    def _step(self, st: _RunState, step_index: int) -> None:
        """One D step then one G step, in place. Reads its noise at `noise_idx` and its Adam scalars at
        `adam_t + 1`; writes its metrics at `noise_idx`; advances both counters."""
        cfg, fast, gan = self.cfg, self.fast, self.gan
        idx = st.noise_idx
        dev = idx.device
        noise = tree_map(lambda t: t.index_select(0, idx).squeeze(0), st.noise)
        sc = st.scalars.index_select(0, st.adam_t + 1)  # [T, 4]
        if not st.stacked:
            sc = sc.squeeze(0)
        real = st.real[noise.real_index + st.offsets[:, None] if st.stacked else noise.real_index]
        with autocast_bf16(fast.bf16_train, dev.type):
            grads_d, metrics = gan.d_grads(st.g, st.d, real, noise, gan.r1_at(step_index), self.d_names)
        gd = [grads_d[n] for n in self.d_names]
        adam_(st.d_train, gd, st.m_d, st.v_d, sc[..., 0], sc[..., 1], cfg.betas, foreach=fast.foreach)
        with autocast_bf16(fast.bf16_train, dev.type):
            grads_g, g_loss = gan.g_grads(st.g, st.d, noise, self.g_names, dev, st.g_source, st.anchors)
        gg = [grads_g[n] for n in self.g_names]
        adam_(st.g_train, gg, st.m_g, st.v_g, sc[..., 2], sc[..., 3], cfg.betas, foreach=fast.foreach)
        if st.ema:
            torch._foreach_lerp_(st.ema, st.g_train, 1.0 - cfg.ema_beta)
        grad_sq = torch.zeros(st.tasks, device=dev)
        for t in (*gd, *gg):
            grad_sq = grad_sq + t.float().square().reshape(st.tasks, -1).sum(dim=1)
        row = torch.stack([metrics["d_loss"].float().reshape(st.tasks), g_loss.float().reshape(st.tasks),
                           metrics["r1"].float().reshape(st.tasks), grad_sq], dim=1)  # [T, 4]
        st.metrics.index_copy_(0, idx, row[None])
        st.logits.index_copy_(0, idx, metrics["real_logits"].float().reshape(1, st.tasks, -1))
        st.noise_idx.add_(1)
        st.adam_t.add_(1)

    def _launch(self, st: _RunState, step: int) -> None:
        """Run step `step`: eagerly, or from its CUDA graph (warm up on a side stream the first time a
        kind of step (with or without R1) is met, capture the second time, replay from then on)."""
        if not self.fast.cuda_graph or st.stacked:
            self._step(st, step)
            return
        kind = self.gan.r1_at(step)
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

    # --- the run -------------------------------------------------------------------------------------

    def anchor_latents(self, g: Params, real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each reference's anchor: of `cfg.anchor_candidates` latents drawn from `generator`, the one whose
        sample under the starting weights `g` is nearest to it, one latent per reference. Returns [K, z_dim]."""
        cfg, z_dim = self.cfg, self.model.config.generator.z_dim
        if real.shape[0] > cfg.anchor_candidates:
            raise ConfigError(f"anchor_candidates={cfg.anchor_candidates} is less than the {real.shape[0]} reference "
                              "images (mirror doubles them): raise anchor_candidates to at least that many")
        z = torch.randn(cfg.anchor_candidates, z_dim, generator=generator)
        with torch.no_grad():
            fakes = torch.cat([self.single.generate(g, chunk.to(real.device)) for chunk in z.split(64)])
        return z[losses.match_anchors(fakes, real)]

    def check_not_collapsed(self, g: Params, step: int) -> None:
        diversity = sample_diversity(self.model, g)
        if diversity < COLLAPSE_STD:
            raise TrainingDivergedError(
                f"adaptation collapsed at step {step}: every sample is nearly the same image (diversity "
                f"{diversity:.1e}); use fewer steps or a lower learning rate (lr_g={self.cfg.lr_g}), keep "
                "augmentation on, or give more reference images")

    def run(self, g: Params, d: Params, real: torch.Tensor, generator: torch.Generator,
            on_step: StepCallback | None = None) -> tuple[Params, Params, AdaptStats]:
        """Adapt (g, d) to `real` [K, 3, R, R] in [-1, 1] for `cfg.steps` steps.

        Non-finite losses or gradients discard that step's update (roll back to the last good weights)
        and count in `stats.rollbacks`; more than `max_rollbacks` in a row raise `TrainingDivergedError`,
        as does a collapsed generator. `on_step(StepProgress)` runs after each step and may raise to
        cancel; the caller's weights are never touched, so a cancelled run changes nothing.

        Returns:
            (adapted G weights, adapted D weights, stats), weights in the contiguous layout.
        """
        return self._run(g, d, [real], [generator], on_step, raise_errors=True)[0]

    def run_tasks(self, g: Params, d: Params, reals: list[torch.Tensor], generators: list[torch.Generator]) -> list:
        """`run` for several tasks from the same weights, task j on reals[j] drawing from generators[j].

        Returns one entry per task: (g_j, d_j, AdaptStats) or the task's `TrainingDivergedError`.
        """
        if self.stacked:
            return self._run(g, d, reals, generators, None, raise_errors=False)
        out = []
        for real, gen in zip(reals, generators):
            try:
                out.append(self.run(g, d, real, gen))
            except TrainingDivergedError as exc:
                out.append(exc)
        return out

    def _run(self, g, d, reals, generators, on_step, raise_errors: bool) -> list:
        cfg = self.cfg
        if cfg.mirror:  # a dataset augmentation: G learns the flipped characters too (DiffAugment acts on both sides)
            reals = [torch.cat([r, r.flip(-1)]) for r in reals]
        steps, T = cfg.steps, len(reals)
        gcfg = self.model.config.generator
        collapse_every = max(1, steps // 4)
        adaptive = cfg.augment.adaptive
        check_every = 1 if adaptive else (self.fast.check_every or collapse_every)
        p = [cfg.augment.probability] * T
        stats = [AdaptStats(aug_probability=p[j]) for j in range(T)]
        consecutive = [0] * T
        failed: list[TrainingDivergedError | None] = [None] * T
        start = time.perf_counter()
        st = _RunState(self, g, d, reals, steps)
        dev = reals[0].device
        if cfg.anchor_weight > 0:  # drawn before the step noise: the steps' draws follow the anchors'
            zs = [self.anchor_latents(g, reals[j], generators[j]) for j in range(T)]
            st.anchors = stack_anchors(zs, reals, dev) if st.stacked else Anchors(zs[0].to(dev), reals[0], None)

        def draw(j: int) -> StepNoise:
            return draw_step_noise(generators[j], reals[j].shape[0], cfg.batch_size, gcfg.z_dim, gcfg.resolution,
                                   p[j])

        def draw_all() -> StepNoise:  # one step's noise of every task ([T, B, ...] when stacked)
            noises = [draw(j) for j in range(T)]
            return tree_map(lambda *ts: torch.stack(ts), *noises) if st.stacked else noises[0]

        if adaptive:  # each step's noise depends on the previous step's p: drawn step by step below
            first = draw_all()
            st.noise = tree_map(lambda t: torch.zeros((steps, *t.shape), dtype=t.dtype, device=dev), first)
            pending = first
        else:  # the very draws of the step-by-step loop, in its order, all at once
            per_step = [draw_all() for _ in range(steps)]
            st.noise = tree_map(lambda *ts: torch.stack(ts).to(dev), *per_step)
            pending = None

        def fail(j: int, exc: TrainingDivergedError) -> None:
            if raise_errors:
                raise exc
            failed[j] = exc

        step = 0
        while step < steps:
            end = step
            while (end + 1) % check_every and (end + 1) % collapse_every and end + 1 < steps:
                end += 1
            if adaptive:  # one-step windows
                noise = pending if pending is not None else draw_all()
                pending = None
                tree_map(lambda buf, t, i=step: buf[i].copy_(t), st.noise, noise)
            st.save("window")
            for k in range(step, end + 1):
                self._launch(st, k)
            values = st.metrics[step:end + 1].cpu()  # [W, T, 4]: the one host sync of the window
            active = torch.tensor([f is None for f in failed])
            finite = torch.isfinite(values).all(dim=2)  # [W, T]
            accepted = finite | ~active
            if not bool(accepted.all()):
                if end == step:  # its outcome is known: undo the bad tasks' step
                    st.restore("window", ~accepted[0])
                else:  # redo the window one step at a time with the per-step rule
                    st.restore("window")
                    st.noise_idx.fill_(step)
                    for k in range(step, end + 1):
                        st.save("step")
                        self._launch(st, k)
                        row = st.metrics[k].cpu()
                        ok = torch.isfinite(row).all(dim=1) | ~active
                        if not bool(ok.all()):
                            st.restore("step", ~ok)  # noise_idx stays advanced: the next step draws its own noise
                        values[k - step], accepted[k - step] = row, ok
            for k in range(step, end + 1):
                for j in range(T):
                    if failed[j] is not None:
                        continue
                    s = stats[j]
                    if bool(accepted[k - step, j]):
                        consecutive[j] = 0
                        if adaptive:
                            p[j] = augment.update_probability(p[j], st.logits[k, j].cpu(), cfg.augment)
                    else:
                        s.rollbacks += 1
                        consecutive[j] += 1
                        if consecutive[j] > cfg.max_rollbacks:
                            fail(j, diverged_error(consecutive[j], k + 1, cfg))
                            continue
                    s.steps = k + 1
                    if s.steps % collapse_every == 0 or s.steps == steps:
                        try:
                            self.check_not_collapsed(st.weights(j), s.steps)
                        except TrainingDivergedError as exc:
                            fail(j, exc)
                            continue
                    d_loss, g_loss, r1, _ = (float(x) for x in values[k - step, j])
                    s.d_loss.append(d_loss)
                    s.g_loss.append(g_loss)
                    s.r1.append(r1)
                    s.aug_probability = p[j]
                    if on_step is not None:
                        on_step(StepProgress(k + 1, steps, d_loss, g_loss, r1, s.rollbacks, p[j], self.model,
                                             st.weights(j)))
            step = end + 1
        seconds = time.perf_counter() - start
        out = []
        for j in range(T):
            if failed[j] is not None:
                out.append(failed[j])
                continue
            stats[j].seconds = seconds
            out.append(({n: t[j].contiguous() if st.stacked else t.contiguous() for n, t in st.g_out.items()},
                        {n: t[j].contiguous() if st.stacked else t.contiguous() for n, t in st.d.items()}, stats[j]))
        return out
