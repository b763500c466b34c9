"""Few-shot adaptation: the inner loop, shared verbatim by `adapt` and meta-training.

The loop is functional: weights live in dicts of tensors, networks run through
`torch.func.functional_call`, and the model passed in is never mutated. Each step draws all of its
randomness up front on the CPU (`draw_step_noise`), then runs one D step and one G step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch.func import functional_call

from . import augment, losses
from .config import AdaptConfig
from .errors import TrainingDivergedError
from .images import prepare_references
from .model import MetaGAN, Params

if TYPE_CHECKING:
    from .fast import FastPath

StepCallback = Callable[[int, int, dict], None]

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


@dataclass
class AdamState:
    """Functional Adam (same arithmetic as `torch.optim.Adam`, no weight decay)."""
    step: int
    m: Params
    v: Params

    @classmethod
    def zeros(cls, params: Params, names) -> "AdamState":
        return cls(0, {n: torch.zeros_like(params[n]) for n in names}, {n: torch.zeros_like(params[n]) for n in names})


def adam_update(params: Params, grads: Params, state: AdamState, lr: float, betas, eps: float = 1e-8):
    """Returns (new params, new state); inputs are left untouched."""
    b1, b2 = betas
    t = state.step + 1
    bc1 = 1 - b1 ** t
    bc2_sqrt = math.sqrt(1 - b2 ** t)
    new_params, m_new, v_new = dict(params), {}, {}
    with torch.no_grad():
        for name, g in grads.items():
            m = state.m[name] * b1 + g * (1 - b1)
            v = state.v[name] * b2 + g * g * (1 - b2)
            new_params[name] = params[name] - (lr / bc1) * m / (v.sqrt() / bc2_sqrt + eps)
            m_new[name], v_new[name] = m, v
    return new_params, AdamState(t, m_new, v_new)


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
    """The error for `consecutive` non-finite steps in a row ending at (1-based) `step`; shared with `fast.py`."""
    return TrainingDivergedError(
        f"adaptation diverged: {consecutive} steps in a row gave non-finite losses (at step "
        f"{step}); lower the learning rate (lr_g={cfg.lr_g}, lr_d={cfg.lr_d}) or use the "
        "'freeze_d' or 'modulation' strategy")


@dataclass
class AdaptStats:
    steps: int = 0
    rollbacks: int = 0
    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    r1: list[float] = field(default_factory=list)
    aug_probability: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        last = lambda xs: xs[-1] if xs else float("nan")
        return {"steps": self.steps, "rollbacks": self.rollbacks, "d_loss": last(self.d_loss),
                "g_loss": last(self.g_loss), "aug_probability": self.aug_probability, "seconds": self.seconds}


class InnerLoop:
    """One GAN adaptation run over a fixed set of real images."""

    def __init__(self, model: MetaGAN, cfg: AdaptConfig):
        self.model = model
        self.cfg = cfg
        self.g_names, self.d_names = trainable_names(model, cfg)
        self.ops = cfg.augment.ops if cfg.augment.enabled else ()

    def generate(self, g: Params, z: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model.G, g, (z,))

    @torch.no_grad()
    def preview(self, g: Params, z: torch.Tensor) -> torch.Tensor:
        return self.generate(g, z)

    def sample_diversity(self, g: Params) -> float:
        """Mean per-pixel std across a few fixed samples: ~0 means G makes one image for every z."""
        from .sampling import latents
        z = latents(COLLAPSE_SEED, 0, COLLAPSE_SAMPLES, self.model.config.generator.z_dim)
        return float(self.preview(g, z.to(self.model.device)).std(dim=0).mean())

    def check_not_collapsed(self, g: Params, step: int) -> None:
        diversity = self.sample_diversity(g)
        if diversity < COLLAPSE_STD:
            raise TrainingDivergedError(
                f"adaptation collapsed at step {step}: every sample is nearly the same image (diversity "
                f"{diversity:.1e}); use fewer steps or a lower learning rate (lr_g={self.cfg.lr_g}), keep "
                "augmentation on, or give more reference images")

    def discriminate(self, d: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model.D, d, (x,))

    def _augment(self, x: torch.Tensor, params: augment.AugmentParams) -> torch.Tensor:
        return augment.apply(x, params.to(x.device), self.ops) if self.ops else x

    def d_grads(self, g: Params, d: Params, real: torch.Tensor, noise: StepNoise, step_index: int,
                names: list[str]):
        """D loss (+ lazy R1 on steps that are multiples of r1_interval) and its gradients for `names`."""
        cfg, dev = self.cfg, real.device
        d_train = {n: d[n].detach().requires_grad_(True) for n in names}
        d_all = {**d, **d_train}
        with torch.no_grad():
            fake = self.generate(g, noise.z_d.to(dev))  # fakes are constants in the D step
        real_b = real[noise.real_index.to(dev)]
        do_r1 = cfg.loss.r1_gamma > 0 and step_index % cfg.loss.r1_interval == 0
        if do_r1:
            real_b = real_b.detach().requires_grad_(True)
        real_logits = self.discriminate(d_all, self._augment(real_b, noise.aug_real))
        fake_logits = self.discriminate(d_all, self._augment(fake, noise.aug_fake_d))
        loss = losses.d_loss(real_logits, fake_logits, cfg.loss.kind)
        r1 = torch.zeros((), device=dev)
        total = loss
        if do_r1:
            r1 = losses.r1_penalty(real_logits, real_b)
            total = loss + r1 * (cfg.loss.r1_gamma / 2 * cfg.loss.r1_interval)
        grads = dict(zip(d_train, torch.autograd.grad(total, list(d_train.values())))) if d_train else {}
        return grads, {"d_loss": loss.detach(), "r1": r1.detach(), "real_logits": real_logits.detach()}

    def g_grads(self, g: Params, d: Params, noise: StepNoise, names: list[str], device):
        """G loss against D (held constant) and its gradients for `names`."""
        g_train = {n: g[n].detach().requires_grad_(True) for n in names}
        fake = self.generate({**g, **g_train}, noise.z_g.to(device))
        loss = losses.g_loss(self.discriminate(d, self._augment(fake, noise.aug_fake_g)), self.cfg.loss.kind)
        grads = dict(zip(g_train, torch.autograd.grad(loss, list(g_train.values())))) if g_train else {}
        return grads, loss.detach()

    def step(self, g: Params, d: Params, opt_g: AdamState, opt_d: AdamState, real: torch.Tensor,
             noise: StepNoise, step_index: int):
        """One D step then one G step against the updated D. Returns (g, d, opt_g, opt_d, metrics);
        nothing passed in is mutated."""
        cfg = self.cfg
        grads_d, metrics = self.d_grads(g, d, real, noise, step_index, self.d_names)
        d_new, opt_d_new = adam_update(d, grads_d, opt_d, cfg.lr_d, cfg.betas)
        grads_g, metrics["g_loss"] = self.g_grads(g, d_new, noise, self.g_names, real.device)
        g_new, opt_g_new = adam_update(g, grads_g, opt_g, cfg.lr_g, cfg.betas)
        metrics["grad_sq"] = sum((t.square().sum() for t in (*grads_d.values(), *grads_g.values())),
                                 torch.zeros((), device=real.device))
        return g_new, d_new, opt_g_new, opt_d_new, metrics

    def run(self, g: Params, d: Params, real: torch.Tensor, generator: torch.Generator,
            on_step: StepCallback | None = None) -> tuple[Params, Params, AdaptStats]:
        """Adapt (g, d) to `real` [K, 3, R, R] in [-1, 1] for `cfg.steps` steps.

        Non-finite losses or gradients discard that step's update (roll back to the last good
        weights) and count in `stats.rollbacks`; more than `max_rollbacks` in a row raise
        `TrainingDivergedError`. `on_step(step, total, stats)` runs after each step and may raise
        to cancel; the caller's weights are never touched, so a cancelled run changes nothing.
        """
        cfg = self.cfg
        g = {n: t.detach() for n, t in g.items()}
        d = {n: t.detach() for n, t in d.items()}
        opt_g, opt_d = AdamState.zeros(g, self.g_names), AdamState.zeros(d, self.d_names)
        p = cfg.augment.probability
        stats = AdaptStats(aug_probability=p)
        consecutive = 0
        start = time.perf_counter()
        gcfg = self.model.config.generator
        check_every = max(1, cfg.steps // 4)
        for step in range(cfg.steps):
            noise = draw_step_noise(generator, real.shape[0], cfg.batch_size, gcfg.z_dim, gcfg.resolution, p)
            g_new, d_new, opt_g_new, opt_d_new, m = self.step(g, d, opt_g, opt_d, real, noise, step)
            values = torch.stack([m["d_loss"], m["g_loss"], m["r1"], m["grad_sq"]]).cpu()
            if bool(torch.isfinite(values).all()):
                g, d, opt_g, opt_d = g_new, d_new, opt_g_new, opt_d_new
                consecutive = 0
                if cfg.augment.adaptive:
                    p = augment.update_probability(p, m["real_logits"], cfg.augment)
            else:
                stats.rollbacks += 1
                consecutive += 1
                if consecutive > cfg.max_rollbacks:
                    raise diverged_error(consecutive, step + 1, cfg)
            stats.steps = step + 1
            if stats.steps % check_every == 0 or stats.steps == cfg.steps:
                self.check_not_collapsed(g, stats.steps)
            stats.d_loss.append(float(values[0]))
            stats.g_loss.append(float(values[1]))
            stats.r1.append(float(values[2]))
            stats.aug_probability = p
            if on_step is not None:
                current_g = g
                on_step(step + 1, cfg.steps, {
                    "d_loss": stats.d_loss[-1], "g_loss": stats.g_loss[-1], "r1": stats.r1[-1],
                    "rollbacks": stats.rollbacks, "aug_probability": p,
                    "preview": lambda z, _g=current_g: self.preview(_g, z.to(real.device)),
                })
        stats.seconds = time.perf_counter() - start
        return g, d, stats


@dataclass
class AdaptResult:
    model: MetaGAN
    stats: AdaptStats


def adapt(model: MetaGAN, references, config: AdaptConfig | None = None, *, generator: torch.Generator | None = None,
          seed: int = 0, on_step: StepCallback | None = None, background=(1.0, 1.0, 1.0),
          fast: FastPath | None = None) -> AdaptResult:
    """Adapt a (meta-learned) model to a few reference images of one character or style.

    Args:
        model: the starting model; never mutated.
        references: [K, C, H, W] tensor or list of [C, H, W] tensors in 0..1 (K from 1 to 64; any size;
            gray, gray+alpha, RGB or RGBA). See `images.prepare_references`.
        config: inner-loop settings; defaults to the ones the checkpoint was meta-trained with.
        generator: CPU `torch.Generator` for every random draw; `seed` seeds a fresh one if omitted.
        on_step: `on_step(step, total, stats)` after every step; raise from it to cancel.
        fast: None (default) runs the reference inner loop; a `fast.FastPath` runs `fast.FastInnerLoop`
            (foreach Adam and channels_last; on CUDA also CUDA graphs; bf16 when asked for). See
            `meta_core/fast.py` for what each does and `tests/test_fast.py` for the tolerances.
    Returns:
        `AdaptResult(model, stats)`: a new `MetaGAN` with the adapted weights, and loss history.

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
        real = prepare_references(references, model.resolution, background).to(model.device).clone()
        g = {n: t.detach().clone() for n, t in model.g_params().items()}
        d = {n: t.detach().clone() for n, t in model.d_params().items()}
        if fast is None:
            loop = InnerLoop(model, cfg)
        else:  # the explicitly chosen fast path
            from .fast import FastInnerLoop
            loop = FastInnerLoop(model, cfg, fast)
        g, d, stats = loop.run(g, d, real, generator, on_step)
        if stats.rollbacks >= stats.steps:  # every step undone: the "adapted" model would be the input
            raise diverged_error(stats.rollbacks, stats.steps, cfg)
        base_hash = model.content_hash() if cfg.strategy == "modulation" else None
        provenance = dict(model.provenance, adapted={"references": int(real.shape[0]), "steps": cfg.steps,
                                                      "strategy": cfg.strategy, "seconds": round(stats.seconds, 3)})
        return AdaptResult(model.with_params(g, d, base_hash=base_hash, provenance=provenance), stats)
