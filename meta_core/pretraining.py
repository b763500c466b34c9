"""Pooled pretraining: plain GAN training on the images of every task at once, the prior that adaptation
and meta-training start from.

It shares the D and G step (`loop.GANStep`) and Adam (`optim.adam_`) with adaptation, not its
bookkeeping: one persistent optimizer for the whole run, an EMA of G's weights (what checkpoints store
and sampling uses, as in StyleGAN), progress counted in images shown, optional bf16 autocast, and an exact
resume from a state file (weights, EMA, Adam moments, step and RNG state).

A class-conditional model (`style_lr_mul > 0`) trains one style vector per task in G and in D: each fake is
drawn in the style of the real image it is paired with and scored by D under that style. The checkpoint keeps
the mean vectors (the style that adaptation starts from and moves) and every task's G vector (`G.styles`).
With `style_dropout` > 0 the tables keep one more, shared row: each sample is drawn (and scored) at it with that
probability, as classifier-free guidance trains its unconditional branch, and checkpoints start adaptation from it
instead of the mean, which the conditional model never draws at.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import torch
from safetensors.torch import load_file

from .checkpoint import atomic_save, read_header
from .config import AdaptConfig, AugmentConfig, LossConfig
from .data import TaskSet, to_float
from .errors import CheckpointError, ConfigError, TrainingDivergedError, UnknownFormatError
from .fastpath import FastPath, autocast_bf16, memory_format, resolve
from .loop import COLLAPSE_STD, GANStep, draw_step_noise, sample_diversity
from .model import MetaGAN
from .optim import adam_, bias_corrections

STATE_KIND = "metagan-pretrain-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class PretrainConfig:
    lr_g: float = 0.002                       # Adam learning rate of G
    lr_d: float = 0.002                       # Adam learning rate of D
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas (StyleGAN2)
    batch_size: int = 32                      # real and fake images per step
    ema_kimg: float = 10.0                    # half-life of the EMA of G, in thousands of images shown
    ema_rampup: float = 0.05                  # EMA half-life at most this fraction of the images shown so far
    seed: int = 0                             # every draw of the run derives from it
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    style_dropout: float = 0.0                # conditional model: share of samples at the shared style row
    frozen_g: tuple[str, ...] = ()            # G parameter-name prefixes left unchanged (a grown model's trunk)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "frozen_g", tuple(str(p) for p in self.frozen_g))
        if not 0.0 <= self.style_dropout <= 1.0:
            raise ConfigError(f"style_dropout {self.style_dropout} must be in [0, 1]")
        if not (self.lr_g > 0 and self.lr_d > 0):
            raise ConfigError(f"learning rates ({self.lr_g}, {self.lr_d}) must be positive")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size} must be at least 1")
        if self.ema_kimg < 0 or self.ema_rampup < 0:
            raise ConfigError("ema_kimg and ema_rampup must be non-negative")


@dataclass
class PretrainStats:
    step: int         # steps done
    images: int       # real images shown so far
    d_loss: float
    g_loss: float
    r1: float


class Pretrainer:
    """Owns a pooled run: G, D, the EMA of G and Adam's moments, advanced one step at a time.

    Args:
        model: the starting weights (never mutated).
        tasks: the training images; their task structure is ignored (pooled).
        cfg: the recipe.
        fast: speed features (`FastPath`: channels_last, foreach Adam, bf16 autocast via `bf16_train`);
            None is the reference configuration.

    Example:
        >>> trainer = Pretrainer(MetaGAN.create(ModelConfig.for_resolution(64)), tasks, PretrainConfig())
        >>> for _ in range(1000): stats = trainer.step()
        >>> prior = trainer.current_model()   # G is the EMA generator
    """

    def __init__(self, model: MetaGAN, tasks: TaskSet, cfg: PretrainConfig, fast: FastPath | None = None):
        self.model, self.cfg = model, cfg
        dev = model.device
        self.fast = resolve(fast, dev)
        cl = self.fast.channels_last
        self.real = torch.cat(tasks.images).to(dev)  # uint8 [N, 3, R, R]: 4x smaller than float
        self.gan = GANStep(model, _as_adapt(cfg), channels_last=cl)

        def own(t: torch.Tensor) -> torch.Tensor:
            return t.detach().clone(memory_format=memory_format(t, cl))

        # the task (style) of every real image: a conditional model's fakes are drawn in their real's style
        self.labels = torch.cat([torch.full((t.shape[0],), i, dtype=torch.long) for i, t in enumerate(tasks.images)])
        self.labels = self.labels.to(dev)
        styles = len(tasks.images)
        if cfg.style_dropout and not model.config.generator.style_lr_mul:
            raise ConfigError("style_dropout needs a class-conditional model: pass --style-lr-mul as well")
        self.shared = styles if cfg.style_dropout else None  # the shared row's index, after the tasks' rows

        stored = getattr(model.G, "styles", None)  # a conditional checkpoint's per-task vectors

        def own_tree(params: dict[str, torch.Tensor], table: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
            tree = {n: own(t) for n, t in params.items()}
            if "style" in tree:  # one style vector per task: the stored ones where they fit, else the model's
                fits = table is not None and table.shape[0] == styles
                rows = table.clone() if fits else tree["style"].expand(styles, -1).clone()
                if self.shared is not None:  # the shared row starts at the model's own (start) style
                    rows = torch.cat([rows, tree["style"][None]])
                tree["style"] = rows
            return tree

        self.g = own_tree(model.g_params(), stored)
        self.d = own_tree(model.d_params())
        self.ema = own_tree(model.g_params(), stored)
        self.g_trained = _trained_names(list(self.g), cfg.frozen_g)
        self.m_g = {n: torch.zeros_like(t) for n, t in self.g.items()}
        self.v_g = {n: torch.zeros_like(t) for n, t in self.g.items()}
        self.m_d = {n: torch.zeros_like(t) for n, t in self.d.items()}
        self.v_d = {n: torch.zeros_like(t) for n, t in self.d.items()}
        done = model.provenance.get("pretrained", {}) if isinstance(model.provenance, dict) else {}
        self.steps_done = int(done.get("steps", 0))    # a model that was pretrained before counts on
        self.images_shown = int(done.get("images_shown", 0))
        self.adam_steps = 0  # Adam's own count (its bias correction): the moments start at 0
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def step(self) -> PretrainStats:
        """One D step, one G step against the updated D, one EMA update."""
        cfg, gan, dev = self.cfg, self.gan, self.model.device
        gcfg = self.model.config.generator
        noise = draw_step_noise(self.generator, self.real.shape[0], cfg.batch_size, gcfg.z_dim, gcfg.resolution,
                                cfg.augment.probability)
        real = to_float(self.real[noise.real_index.to(dev)])
        if self.fast.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = self.labels[noise.real_index.to(dev)]
        if self.shared is not None:
            shared = torch.rand(labels.shape[0], generator=self.generator) < cfg.style_dropout
            labels = torch.where(shared.to(dev), self.shared, labels)
        t = self.adam_steps + 1
        bf16, foreach = self.fast.bf16_train, self.fast.foreach
        with autocast_bf16(bf16, dev.type):
            grads_d, metrics = gan.d_grads(_rows(self.g, labels), _rows(self.d, labels), real, noise,
                                           gan.r1_at(self.steps_done), list(self.d))
        grads_d = _scatter_rows(grads_d, self.d, labels)
        names = list(self.d)
        adam_([self.d[n] for n in names], [grads_d[n] for n in names], [self.m_d[n] for n in names],
              [self.v_d[n] for n in names], *bias_corrections(cfg.lr_d, cfg.betas, t), cfg.betas, foreach=foreach)
        with autocast_bf16(bf16, dev.type):
            grads_g, g_loss = gan.g_grads(_rows(self.g, labels), _rows(self.d, labels), noise, self.g_trained, dev)
        grads_g = _scatter_rows(grads_g, self.g, labels)
        names = self.g_trained
        adam_([self.g[n] for n in names], [grads_g[n] for n in names], [self.m_g[n] for n in names],
              [self.v_g[n] for n in names], *bias_corrections(cfg.lr_g, cfg.betas, t), cfg.betas, foreach=foreach)
        self.adam_steps = t
        self.steps_done += 1
        self.images_shown += cfg.batch_size
        self._update_ema()
        values = torch.stack([metrics["d_loss"].float(), g_loss.float(), metrics["r1"].float()]).cpu()
        if not bool(torch.isfinite(values).all()):
            raise TrainingDivergedError(f"pretraining diverged at step {self.steps_done} (losses {values.tolist()}): "
                                        "resume from the last state file with lower learning rates")
        return PretrainStats(self.steps_done, self.images_shown, *(float(v) for v in values))

    def _update_ema(self) -> None:
        cfg = self.cfg
        half_life = cfg.ema_kimg * 1000
        if cfg.ema_rampup:
            half_life = min(half_life, self.images_shown * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(half_life, 1e-8))
        names = list(self.ema)
        with torch.no_grad():
            torch._foreach_lerp_([self.ema[n] for n in names], [self.g[n] for n in names], 1.0 - beta)

    def check_not_collapsed(self) -> None:
        diversity = sample_diversity(self.model, self._start_style(self.ema))
        if diversity < COLLAPSE_STD:
            raise TrainingDivergedError(f"pretraining collapsed at step {self.steps_done} (diversity "
                                        f"{diversity:.1e}): resume from an earlier state with lower learning rates")

    @property
    def styles(self) -> int:
        """How many tasks have a style vector of their own (0: not a class-conditional model)."""
        return int(self.ema["style"].shape[0]) - (self.shared is not None) if "style" in self.ema else 0

    def _start_style(self, tree: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`tree` at the style adaptation starts from: the shared row (`style_dropout`), else the tasks' mean."""
        if "style" not in tree:
            return tree
        table = tree["style"]
        return {**tree, "style": table[self.shared] if self.shared is not None else table.mean(dim=0)}

    def current_model(self, style: int | None = None, **changes) -> MetaGAN:
        """The EMA generator and the current D as a `MetaGAN` (what checkpoints store and samples show). A
        conditional model's style vectors are the one adaptation starts from (the shared row, else the mean over
        the tasks), or task `style`'s own."""
        provenance = dict(self.model.provenance, pretrained={
            "steps": self.steps_done, "images_shown": self.images_shown, "config": asdict(self.cfg)})
        if style is None:
            g, d = self._start_style(self.ema), self._start_style(self.d)
        else:
            g, d = ({**tree, "style": tree["style"][style]} for tree in (self.ema, self.d))
        g = {n: t.contiguous() for n, t in g.items()}
        d = {n: t.contiguous() for n, t in d.items()}
        if self.styles:  # the checkpoint keeps every task's (EMA) vector too: adaptation may start from one
            gcfg = replace(self.model.config.generator, style_count=self.styles)
            g["styles"] = self.ema["style"][:self.styles].contiguous()
            changes.setdefault("config", replace(self.model.config, generator=gcfg))
        return self.model.with_params(g, d, **{"provenance": provenance, **changes})

    # --- exact resume ------------------------------------------------------------------------------

    def _trees(self) -> tuple[tuple[str, dict[str, torch.Tensor]], ...]:
        """Every tensor dict of the run, with its prefix in a state file."""
        return (("G", self.g), ("G_ema", self.ema), ("D", self.d), ("m_g", self.m_g), ("v_g", self.v_g),
                ("m_d", self.m_d), ("v_d", self.v_d))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for prefix, tree in self._trees():
            out.update({f"{prefix}.{n}": t for n, t in tree.items()})
        out["rng"] = self.generator.get_state()
        return out

    def save_state(self, path, extra: dict | None = None) -> None:
        """Everything an exact resume needs (not for git: it holds Adam's moments); `extra` is stored as JSON
        and comes back from `load_state`."""
        metadata = {"format_version": str(STATE_VERSION), "model_kind": STATE_KIND,
                    "state": json.dumps({"steps": self.steps_done, "images": self.images_shown,
                                         "adam_steps": self.adam_steps,
                                         "config": asdict(self.cfg), "extra": extra or {}}, sort_keys=True)}
        atomic_save(self.state_tensors(), metadata, path)

    def load_state(self, path) -> dict:
        """Continue exactly where `save_state` left off (same model shape and recipe); returns its `extra`."""
        _, metadata = read_header(path)
        if metadata.get("model_kind") != STATE_KIND or metadata.get("format_version") != str(STATE_VERSION):
            raise UnknownFormatError(path, f"not a pretraining state file (kind {metadata.get('model_kind')!r}, "
                                           f"version {metadata.get('format_version')!r}): pass the .state.safetensors "
                                           "file that `pretrain` wrote")
        tensors = load_file(str(path), device=str(self.model.device))
        expected = self.state_tensors()
        if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
            raise CheckpointError(path, "was written for a different model shape: resume with the same --resolution "
                                        "and channel settings")
        for prefix, tree in self._trees():
            for n in tree:
                tree[n].copy_(tensors[f"{prefix}.{n}"])  # into this run's layout
        self.generator.set_state(tensors["rng"].cpu())
        state = json.loads(metadata["state"])
        self.steps_done, self.images_shown = int(state["steps"]), int(state["images"])
        self.adam_steps = int(state.get("adam_steps", state["steps"]))
        return state.get("extra", {})


def _trained_names(names: list[str], frozen: tuple[str, ...]) -> list[str]:
    """`names` less those under a `frozen` prefix (the name itself or `prefix.`); every prefix must match one."""
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unknown = [p for p in frozen if not any(under(n, p) for n in names)]
    if unknown:
        raise ConfigError(f"frozen_g prefixes {unknown} match no generator parameter; the generator has "
                          f"{sorted({n.split('.')[0] for n in names})} at the top level")
    trained = [n for n in names if not any(under(n, p) for p in frozen)]
    if not trained:
        raise ConfigError(f"frozen_g {list(frozen)} freezes every generator parameter: leave at least one to train")
    return trained


def _rows(tree: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights a batch runs with: a style table [tasks, C] becomes each sample's row [B, C]."""
    return {**tree, "style": tree["style"][labels]} if "style" in tree else tree


def _scatter_rows(grads: dict[str, torch.Tensor], tree: dict[str, torch.Tensor], labels: torch.Tensor):
    """Gradients of the per-sample style rows [B, C] summed back into the table's shape [tasks, C]."""
    if "style" not in grads:
        return grads
    table = torch.zeros_like(tree["style"]).index_add_(0, labels, grads["style"].to(tree["style"].dtype))
    return {**grads, "style": table}


def _as_adapt(cfg: PretrainConfig):
    """The `AdaptConfig` view of a recipe that `GANStep` reads (loss, augmentation)."""
    return AdaptConfig(steps=1, lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=cfg.betas, batch_size=cfg.batch_size,
                       strategy="full", augment=cfg.augment, loss=cfg.loss)


__all__ = ["PretrainConfig", "PretrainStats", "Pretrainer"]
