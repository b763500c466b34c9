"""Frozen dataclass configs. Each is stored as JSON in checkpoint metadata (see `checkpoint.py`)."""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field

from .errors import ConfigError

RESOLUTIONS = (8, 16, 32, 64, 128, 256)  # 8 and 16 exist for tests; the product uses 32..256
STRATEGIES = ("full", "freeze_d", "modulation")
STYLE_INITS = ("stored", "nearest")
LOSSES = ("ns_logistic", "minimax")
AUGMENT_OPS = ("color", "translation", "cutout")
ALGORITHMS = ("reptile", "fomaml")
ARCHS = ("stylegan2", "dcgan")  # network families (see networks.py); old checkpoints are stylegan2
D_ARCHS = (*ARCHS, "projected")  # discriminators: also heads on frozen ImageNet features (see projected.py)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _check_resolution(resolution: int) -> None:
    _check(resolution in RESOLUTIONS,
           f"resolution {resolution} is not supported: choose one of {', '.join(map(str, RESOLUTIONS))}")


def _check_style(style_lr_mul: float, arch: str) -> None:
    _check(isinstance(style_lr_mul, (int, float)) and 0.0 <= style_lr_mul < float("inf"),
           f"style_lr_mul {style_lr_mul} must be a finite number >= 0 (0: no style vector)")
    _check(style_lr_mul == 0 or arch == "dcgan",
           f"a style vector (style_lr_mul {style_lr_mul}) exists for the dcgan arch only, not {arch!r}: "
           "use --arch dcgan or leave it at 0")


@dataclass(frozen=True)
class GeneratorConfig:
    resolution: int = 64          # output side in pixels, a power of two
    z_dim: int = 128              # latent z size
    w_dim: int = 128              # style vector w size (stylegan2; a dcgan's w is its 4x4 input features)
    mapping_layers: int = 4       # MLP depth of z -> w
    mapping_lr_mul: float = 0.01  # learning-rate multiplier of the mapping network (StyleGAN)
    channel_base: int = 2048      # channels at resolution r are min(channel_base // r, channel_max)
    channel_max: int = 128
    arch: str = "stylegan2"       # "stylegan2" (mapping + modulated convs) or "dcgan" (transposed convs, pixel norm)
    style_lr_mul: float = 0.0     # > 0: a learned style vector added to w, scaled by this (class-conditional; dcgan)
    style_count: int = 0          # training styles whose vectors the checkpoint keeps (adaptation can start from one)

    def __post_init__(self):
        _check_resolution(self.resolution)
        _check_style(self.style_lr_mul, self.arch)
        _check(isinstance(self.style_count, int) and self.style_count >= 0 and
               (self.style_count == 0 or self.style_lr_mul > 0),
               f"style_count {self.style_count} must be an integer >= 0, and 0 unless style_lr_mul > 0")
        _check(self.arch in ARCHS, f"unknown generator arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        _check(self.arch != "dcgan" or self.w_dim == self.z_dim,
               f"a dcgan generator has no w_dim of its own (its w is its 4x4 input features): give w_dim = z_dim "
               f"({self.z_dim}), not {self.w_dim}")
        _check(self.z_dim > 0 and self.w_dim > 0, "z_dim and w_dim must be positive")
        _check(self.mapping_layers >= 1, "mapping_layers must be at least 1")
        _check(self.channel_base > 0 and self.channel_max > 0, "channel_base and channel_max must be positive")

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_base // res, self.channel_max))


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution: int = 64       # input side in pixels; must equal the generator's
    channel_base: int = 2048   # channels at resolution r are min(channel_base // r, channel_max)
    channel_max: int = 128
    mbstd: bool = True         # minibatch standard-deviation feature at 4x4
    arch: str = "stylegan2"    # "stylegan2" (residual blocks), "dcgan" (strided 4x4 convs) or "projected"
    style_lr_mul: float = 0.0  # > 0: a learned style vector projected on the pooled features, scaled by this (dcgan)
    spectral_norm: bool = False  # every conv's weight divided by its largest singular value (dcgan; Miyato 2018)

    def __post_init__(self):
        _check_resolution(self.resolution)
        _check_style(self.style_lr_mul, self.arch)
        _check(not self.spectral_norm or self.arch == "dcgan",
               f"spectral_norm exists for the dcgan discriminator only, not {self.arch!r}: use --arch dcgan or "
               "leave it off")
        _check(self.arch in D_ARCHS,
               f"unknown discriminator arch {self.arch!r}: choose one of {', '.join(D_ARCHS)}")
        _check(self.channel_base > 0 and self.channel_max > 0, "channel_base and channel_max must be positive")

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_base // res, self.channel_max))

    @property
    def num_blocks(self) -> int:
        return self.resolution.bit_length() - 3  # one block per halving down to 4x4


@dataclass(frozen=True)
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self):
        _check(self.generator.resolution == self.discriminator.resolution,
               f"generator resolution {self.generator.resolution} differs from discriminator resolution "
               f"{self.discriminator.resolution}: build both for the same resolution")

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    @classmethod
    def for_resolution(cls, resolution: int, channel_base: int = 2048, channel_max: int = 128,
                       z_dim: int = 128, w_dim: int = 128, mapping_layers: int = 4,
                       arch: str = "stylegan2") -> ModelConfig:
        return cls(GeneratorConfig(resolution=resolution, z_dim=z_dim, w_dim=z_dim if arch == "dcgan" else w_dim,
                                   mapping_layers=mapping_layers, channel_base=channel_base,
                                   channel_max=channel_max, arch=arch),
                   DiscriminatorConfig(resolution=resolution, channel_base=channel_base, channel_max=channel_max,
                                       arch=arch))


@dataclass(frozen=True)
class AugmentConfig:
    ops: tuple[str, ...] = AUGMENT_OPS  # DiffAugment ops, applied alike to real and fake images
    probability: float = 1.0            # per-sample, per-op probability (starting value when adaptive)
    adaptive: bool = False              # ADA heuristic: tune probability towards `target`
    target: float = 0.6                 # target of r = E[sign(D(real))]
    speed: float = 0.01                 # change of probability per step when adaptive

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [op for op in self.ops if op not in AUGMENT_OPS]
        _check(not unknown, f"unknown augmentation op(s) {unknown}: choose from {', '.join(AUGMENT_OPS)}")
        _check(0.0 <= self.probability <= 1.0, f"augment probability {self.probability} must be in [0, 1]")
        _check(0.0 < self.target < 1.0, f"ADA target {self.target} must be in (0, 1)")
        _check(self.speed >= 0.0, "ADA speed must be non-negative")

    @property
    def enabled(self) -> bool:
        return bool(self.ops) and (self.probability > 0.0 or self.adaptive)


@dataclass(frozen=True)
class LossConfig:
    kind: str = "ns_logistic"  # "ns_logistic" (non-saturating) or "minimax" (the original V(D, G))
    r1_gamma: float = 1.0      # R1 weight; 0 disables
    r1_interval: int = 4       # lazy regularisation: R1 every N steps, scaled by N

    def __post_init__(self):
        _check(self.kind in LOSSES, f"unknown loss {self.kind!r}: choose one of {', '.join(LOSSES)}")
        _check(self.r1_gamma >= 0.0, f"r1_gamma {self.r1_gamma} must be non-negative")
        _check(self.r1_interval >= 1, f"r1_interval {self.r1_interval} must be at least 1")


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 100                          # inner-loop steps (G and D step each)
    lr_g: float = 0.002                       # Adam learning rate of G
    lr_d: float = 0.002                       # Adam learning rate of D
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas (StyleGAN2)
    batch_size: int = 8                       # real and fake images per step
    strategy: str = "freeze_d"                # "full", "freeze_d" or "modulation"
    freeze_d_blocks: int = 1                  # D blocks frozen from the input side (freeze_d, modulation)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    max_rollbacks: int = 5                    # consecutive non-finite steps tolerated before giving up
    ema_half_life: float = 0.0                # steps; > 0 returns an EMA of G's trained weights (0: the last ones)
    style_init: str = "stored"                # conditional G: start from its "stored" style or the "nearest" one
    cdc_weight: float = 0.0                   # > 0 adds cross-domain distance consistency to G's loss (diversity)
    mirror: bool = False                      # also train on the references flipped left-right (ADA's --mirror)
    anchor_weight: float = 0.0                # > 0: G's loss adds each reference's L1 distance to its anchor sample
    anchor_candidates: int = 256              # prior samples each reference's anchor latent is chosen from

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _check(isinstance(self.steps, int) and self.steps >= 1, f"steps {self.steps} must be a positive integer")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and value == value and 0.0 <= value < float("inf"),
                   f"{name} {value} must be a finite, non-negative number")
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
               f"betas {self.betas} must be in [0, 1)")
        _check(self.batch_size >= 1, f"batch_size {self.batch_size} must be at least 1")
        _check(self.strategy in STRATEGIES,
               f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        _check(self.freeze_d_blocks >= 0, "freeze_d_blocks must be non-negative")
        _check(self.max_rollbacks >= 0, "max_rollbacks must be non-negative")
        _check(self.style_init in STYLE_INITS,
               f"unknown style_init {self.style_init!r}: choose one of {', '.join(STYLE_INITS)}")
        _check(isinstance(self.ema_half_life, (int, float)) and 0.0 <= self.ema_half_life < float("inf"),
               f"ema_half_life {self.ema_half_life} must be a finite number of steps >= 0 (0 turns the EMA off)")
        _check(isinstance(self.cdc_weight, (int, float)) and 0.0 <= self.cdc_weight < float("inf"),
               f"cdc_weight {self.cdc_weight} must be a finite number >= 0 (0 turns distance consistency off)")
        _check(isinstance(self.mirror, bool), f"mirror {self.mirror!r} must be true or false")
        _check(isinstance(self.anchor_weight, (int, float)) and 0.0 <= self.anchor_weight < float("inf"),
               f"anchor_weight {self.anchor_weight} must be a finite number >= 0 (0 turns the anchors off)")
        _check(isinstance(self.anchor_candidates, int) and self.anchor_candidates >= 1,
               f"anchor_candidates {self.anchor_candidates} must be a positive integer (at least the reference count)")
        _check(self.cdc_weight == 0.0 or self.batch_size >= 3,
               f"cdc_weight needs batch_size >= 3 (got {self.batch_size}): it compares each sample with the others")

    @property
    def ema_beta(self) -> float:
        """Per-step EMA decay of G's weights (0.0 when the EMA is off)."""
        return 0.5 ** (1.0 / self.ema_half_life) if self.ema_half_life > 0 else 0.0


@dataclass(frozen=True)
class MetaConfig:
    algorithm: str = "reptile"  # "reptile" or "fomaml" (first-order MAML)
    steps: int = 2000           # outer (meta) steps
    meta_batch: int = 4         # tasks per outer step
    support_size: int = 10      # images per task seen by the inner loop (K)
    query_size: int = 8         # images per task for the FOMAML outer gradient
    eps_start: float = 0.5      # Reptile outer step size, annealed linearly ...
    eps_end: float = 0.05       # ... to this at the last step
    outer_lr: float = 0.002     # FOMAML outer SGD learning rate
    seed: int = 0               # all task, image and latent draws derive from it
    inner: AdaptConfig = field(default_factory=lambda: AdaptConfig(steps=10, strategy="full"))

    def __post_init__(self):
        _check(self.algorithm in ALGORITHMS,
               f"unknown meta-learning algorithm {self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        _check(self.steps >= 1, f"steps {self.steps} must be at least 1")
        _check(self.meta_batch >= 1, f"meta_batch {self.meta_batch} must be at least 1")
        _check(self.support_size >= 1 and self.query_size >= 1, "support_size and query_size must be at least 1")
        _check(0.0 <= self.eps_end and 0.0 < self.eps_start <= 1.0, "Reptile eps must be in (0, 1]")
        _check(self.outer_lr > 0.0, "outer_lr must be positive")

    def eps_at(self, step: int) -> float:
        frac = min(max(step / max(self.steps - 1, 1), 0.0), 1.0)
        return self.eps_start + (self.eps_end - self.eps_start) * frac


# --- JSON round trip -------------------------------------------------------------------------------

def to_json(cfg) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from `asdict` output. Unknown keys are an error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}: the file was written by a newer version; "
                          "upgrade comfyui-metagan")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from None


def apply_overrides(cfg, text: str):
    """`cfg` (a config dataclass) with the changes of "name=value,name=value" applied: scalar fields
    (numbers, strings, true/false), tuples of strings joined by "+" ("augment.ops=translation+cutout"; "none"
    for the empty tuple) and, dotted, those of nested configs ("loss.r1_gamma=0.1"). For the command line;
    raises ConfigError listing the fields there are for an unknown name or a bad value."""
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"cannot set {item!r}: give name=value")
        cfg = _override(cfg, name.strip().split("."), value.strip(), item)
    return cfg


def _override(cfg, path: list[str], value: str, item: str):
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cfg)}
    kinds = {n: k for n, k in fields.items()
             if k in (int, float, str, bool, tuple[str, ...]) or dataclasses.is_dataclass(k)}
    head, kind = path[0], kinds.get(path[0])
    if kind is None or dataclasses.is_dataclass(kind) != (len(path) > 1):
        choices = ", ".join(f"{n}.<field>" if dataclasses.is_dataclass(k) else n for n, k in sorted(kinds.items()))
        raise ConfigError(f"cannot set {item!r}: choose among {choices}")
    if len(path) > 1:
        return dataclasses.replace(cfg, **{head: _override(getattr(cfg, head), path[1:], value, item)})
    if kind == tuple[str, ...]:
        return dataclasses.replace(cfg, **{head: () if value == "none" else tuple(value.split("+"))})
    try:
        parsed = {"true": True, "false": False}[value.lower()] if kind is bool else kind(value)
    except (KeyError, ValueError):
        raise ConfigError(f"{item!r}: {value!r} is not a valid {kind.__name__}") from None
    return dataclasses.replace(cfg, **{head: parsed})


def from_json(cls, text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{cls.__name__} is not valid JSON ({exc})") from None
    return from_dict(cls, data)
