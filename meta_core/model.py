"""`MetaGAN`: a generator/discriminator pair with its configs, adaptation defaults and provenance."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .config import AdaptConfig, MetaConfig, ModelConfig
from .networks import build_discriminator, build_generator

Params = dict[str, torch.Tensor]


@dataclass
class MetaGAN:
    config: ModelConfig
    G: nn.Module  # networks.Generator or networks.DCGANGenerator, as config.generator.arch says
    D: nn.Module  # networks.Discriminator or networks.DCGANDiscriminator
    adapt_defaults: AdaptConfig = field(default_factory=AdaptConfig)  # the inner loop meta-training used
    meta_config: MetaConfig | None = None                            # how it was meta-trained, if it was
    meta_step: int = 0                                                # outer steps done (for resuming)
    provenance: dict = field(default_factory=dict)                   # data, command, wall time, hardware
    base_hash: str | None = None                                      # set on models adapted with `modulation`

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0, **kwargs) -> MetaGAN:
        """Fresh random weights, drawn from `seed` (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # module constructors draw from the default RNG; fork_rng confines it
            G = build_generator(config.generator)
            D = build_discriminator(config.discriminator)
        return cls(config, G.requires_grad_(False).eval(), D.requires_grad_(False).eval(), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def to(self, device) -> MetaGAN:
        self.G.to(device)
        self.D.to(device)
        return self

    def g_params(self) -> Params:
        return dict(self.G.named_parameters())

    def d_params(self) -> Params:
        return dict(self.D.named_parameters())

    def state_dict(self) -> Params:
        """Flat tensors as stored in a checkpoint: `G.<name>` and `D.<name>`."""
        out = {f"G.{k}": v for k, v in self.G.state_dict().items()}
        out.update({f"D.{k}": v for k, v in self.D.state_dict().items()})
        return out

    def with_params(self, g: Params, d: Params, **changes) -> MetaGAN:
        """A new model with (copies of) these weights; this one is left untouched.

        Modules are built on the meta device and the tensors assigned, so nothing is initialised twice
        and it works for inference tensors too (ComfyUI runs nodes under `torch.inference_mode`).
        """
        config = changes.get("config", self.config)  # a new config may add parameters (`with_style_vectors`)
        with torch.device("meta"):
            G, D = build_generator(config.generator), build_discriminator(config.discriminator)
        # buffers (a projected D's frozen features) are not trained: they come along unchanged
        for new, old, params in ((G, self.G, g), (D, self.D, d)):
            tensors = {**dict(old.named_buffers()), **params}
            new.load_state_dict({k: v.detach().clone() for k, v in tensors.items()}, assign=True)
        G.requires_grad_(False).eval()
        D.requires_grad_(False).eval()
        fields = dict(config=config, G=G, D=D, adapt_defaults=self.adapt_defaults, meta_config=self.meta_config,
                      meta_step=self.meta_step, provenance=dict(self.provenance), base_hash=self.base_hash)
        fields.update(changes)
        return MetaGAN(**fields)

    def with_style_vectors(self, lr_mul: float, generator: bool = True, discriminator: bool = True) -> MetaGAN:
        """This model with zero style vectors added (to G, D or both; see `GeneratorConfig.style_lr_mul`): it draws
        exactly the same images and gives the same logits until they are trained. Vectors already there are kept."""
        gcfg, dcfg = self.config.generator, self.config.discriminator
        g, d = self.g_params(), self.d_params()
        if generator and not gcfg.style_lr_mul:
            gcfg = replace(gcfg, style_lr_mul=lr_mul)
            g = {**g, "style": torch.zeros(gcfg.z_dim, device=self.device)}
        if discriminator and not dcfg.style_lr_mul:
            dcfg = replace(dcfg, style_lr_mul=lr_mul)
            d = {**d, "style": torch.zeros(dcfg.channels(4), device=self.device)}  # D's 4x4 features
        return self.with_params(g, d, config=ModelConfig(gcfg, dcfg))

    def content_hash(self) -> str:
        """SHA-256 over tensor names, dtypes, shapes and bytes: identifies weights, not files."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().clone(memory_format=torch.contiguous_format)  # channels_last [o,i,1,1] too
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def parameter_summary(self) -> dict[str, int]:
        g = sum(p.numel() for p in self.G.parameters())
        d = sum(p.numel() for p in self.D.parameters())
        mod = sum(self.G.get_parameter(n).numel() for n in self.G.modulation_parameter_names())
        return {"generator": g, "discriminator": d, "modulation": mod, "total": g + d}
