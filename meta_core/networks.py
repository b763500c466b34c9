"""Generator (mapping z -> w, style-modulated synthesis) and residual discriminator.

StyleGAN2-style layers with equalised learning rate, in plain PyTorch. Nothing keeps running
statistics, so `torch.func.functional_call` and `vmap` over parameter dicts are safe.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiscriminatorConfig, GeneratorConfig
from .projected import ProjectedDiscriminator

SQRT2 = math.sqrt(2.0)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * SQRT2  # gain keeps activations at unit variance


class EqualLinear(nn.Module):
    """Linear layer with weights stored at unit variance and scaled at run time (equalised lr)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return _lrelu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """Conv layer with equalised lr; optional 2x average-pool downsampling after the conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 activate: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.activate = activate
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return _lrelu(x) if self.activate else x


class ModulatedConv2d(nn.Module):
    """Style-modulated conv (StyleGAN2), written as scale-input / shared-conv / scale-output so it
    batches without grouped convs. `affine` maps w to per-input-channel styles."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, up: bool = False,
                 demodulate: bool = True, activate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.up = up
        self.demodulate = demodulate
        self.activate = activate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # x [NCHW], w [N, w_dim]
        styles = self.affine(w)  # [N, Cin]
        weight = self.weight * self.weight_gain
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # Output-channel norm of the style-scaled kernel: [N, Cin] @ [Cin, Cout] -> [N, Cout].
            dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)
            x = x * dcoefs[:, :, None, None]
        x = x + self.bias[None, :, None, None]
        return _lrelu(x) if self.activate else x


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activate=True)
                                    for i in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [N, z_dim] -> [N, w_dim]
        if _autocast_enabled(z.device.type):
            # Mixed precision (the fast path's bf16 autocast) leaves the mapping in fp32, as StyleGAN2-ADA does.
            with torch.autocast(z.device.type, enabled=False):
                return self.forward(z.float())
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class SynthesisBlock(nn.Module):
    """Upsample + two modulated convs + a toRGB skip output."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, first: bool):
        super().__init__()
        self.conv0 = None if first else ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=True)
        self.conv1 = ModulatedConv2d(out_channels if not first else in_channels, out_channels, 3, w_dim)
        self.torgb = ModulatedConv2d(out_channels, 3, 1, w_dim, demodulate=False, activate=False)

    def forward(self, x, img, w):
        if self.conv0 is not None:
            x = self.conv0(x, w)
        x = self.conv1(x, w)
        rgb = self.torgb(x, w)
        if rgb.dtype in (torch.float16, torch.bfloat16):
            rgb = rgb.float()  # mixed precision (the fast path's bf16 autocast): the RGB skip sum stays fp32
        img = rgb if img is None else F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + rgb
        return x, img


class Generator(nn.Module):
    """z [N, z_dim] -> image [N, 3, R, R] in [-1, 1]. One w per image drives every layer."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(cfg.channels(4), 4, 4))
        blocks = []
        res = 4
        while res <= cfg.resolution:
            blocks.append(SynthesisBlock(cfg.channels(max(res // 2, 4)), cfg.channels(res), cfg.w_dim, first=res == 4))
            res *= 2
        self.blocks = nn.ModuleList(blocks)

    def synthesis(self, w: torch.Tensor, features: bool = False):  # [N, w_dim] -> [N, 3, R, R]
        x = self.const[None].expand(w.shape[0], -1, -1, -1)
        img, maps = None, []
        for block in self.blocks:
            x, img = block(x, img, w)
            maps.append(x)
        return (torch.tanh(img), maps) if features else torch.tanh(img)

    def forward(self, z: torch.Tensor, features: bool = False):
        """Images [N, 3, R, R]; with `features`, (images, each synthesis block's feature maps)."""
        return self.synthesis(self.mapping(z), features)

    def modulation_parameter_names(self) -> list[str]:
        """The small set a `modulation` adaptation trains: style affines and synthesis biases."""
        return [name for name, _ in self.named_parameters()
                if name.startswith("blocks.") and (".affine." in name or name.endswith(".bias"))]


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second halves the resolution) plus a 1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activate=False, down=True)

    def forward(self, x):
        return (self.skip(x) + self.conv1(self.conv0(x))) / SQRT2


class Discriminator(nn.Module):
    """image [N, 3, R, R] -> logit [N]. Blocks are ordered from the input side, so FreezeD freezes a prefix."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.fromrgb = EqualConv2d(3, cfg.channels(cfg.resolution), 1)
        blocks = []
        res = cfg.resolution
        while res > 4:
            blocks.append(DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = cfg.channels(4)
        self.conv = EqualConv2d(c4 + int(cfg.mbstd), c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # [N, 3, R, R] -> [N]
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        if self.cfg.mbstd:
            # One feature: the mean over channels and pixels of the per-feature std across the batch.
            std = (x - x.mean(dim=0, keepdim=True)).square().mean(dim=0).add(1e-8).sqrt().mean()
            x = torch.cat([x, std.expand(x.shape[0], 1, 4, 4)], dim=1)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x).squeeze(1)

    def frozen_parameter_names(self, blocks: int) -> list[str]:
        """FreezeD: fromrgb and the first `blocks` residual blocks (capped so the head always trains)."""
        blocks = min(blocks, len(self.blocks))
        if blocks <= 0:
            return []
        prefixes = ("fromrgb.",) + tuple(f"blocks.{i}." for i in range(blocks))
        return [name for name, _ in self.named_parameters() if name.startswith(prefixes)]


# --- dcgan: transposed convolutions and strided convolutions, cheap on a CPU ------------------------------

def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector to unit RMS (ProGAN): per image, so a sample never depends on its batch."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class ZNorm(nn.Module):
    """z normalised to unit RMS (no parameters): the dcgan generator's first step."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [N, z_dim] -> [N, z_dim]
        return z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)


class UpBlock(nn.Module):
    """ConvTranspose 4x4 stride 2 (doubles the side), pixel norm, a per-channel gain and bias, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.gain = nn.Parameter(torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pixel_norm(self.conv(x))
        return F.relu(x * self.gain[None, :, None, None] + self.bias[None, :, None, None])


class DCGANGenerator(nn.Module):
    """z [N, z_dim] -> image [N, 3, R, R] in [-1, 1]: the DCGAN generator with pixel norm in place of batch norm
    (so that image i of a seed never depends on the other images of its batch, and no running statistics are
    kept, as `functional_call` and `vmap` need). Channels at resolution r: `cfg.channels(r)`.

    Its w (what `mapping` returns, and where sampling truncates and interpolates) is the 4x4 input feature map,
    flattened: [N, channels(4) * 16]. The normalised z cannot serve: the layer after it is followed by pixel norm,
    so scaling z changes nothing, and its mean is ~0, so truncation towards it would change nothing either."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.znorm = ZNorm()
        c4 = cfg.channels(4)
        self.input = nn.Linear(cfg.z_dim, c4 * 16, bias=False)
        self.gain = nn.Parameter(torch.ones(c4))
        self.bias = nn.Parameter(torch.zeros(c4))
        blocks, res = [], 8
        while res < cfg.resolution:
            blocks.append(UpBlock(cfg.channels(res // 2), cfg.channels(res)))
            res *= 2
        self.blocks = nn.ModuleList(blocks)
        self.torgb = nn.ConvTranspose2d(cfg.channels(cfg.resolution // 2), 3, 4, 2, 1)
        for m in self.modules():  # DCGAN's initialisation
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if cfg.style_lr_mul:
            # the style the samples are drawn in; pretraining swaps in [N, z_dim], one row per sample's style
            self.style = nn.Parameter(torch.zeros(cfg.z_dim))
        if cfg.style_count:  # the training styles' vectors (not trained: where adaptation may start from)
            self.register_buffer("styles", torch.zeros(cfg.style_count, cfg.z_dim))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:  # [N, z_dim] -> w [N, channels(4) * 16]
        w = self.znorm(z)
        if self.cfg.style_lr_mul:
            w = w + self.style * self.cfg.style_lr_mul  # scaled so that Adam moves it style_lr_mul times faster
        x = _pixel_norm(self.input(w).view(w.shape[0], -1, 4, 4))
        return F.relu(x * self.gain[None, :, None, None] + self.bias[None, :, None, None]).flatten(1)

    def synthesis(self, w: torch.Tensor, features: bool = False):  # w [N, channels(4) * 16] -> [N, 3, R, R]
        x = w.view(w.shape[0], -1, 4, 4)
        maps = [x]
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        img = torch.tanh(self.torgb(x).float())
        return (img, maps) if features else img

    def forward(self, z: torch.Tensor, features: bool = False):
        """Images [N, 3, R, R]; with `features`, (images, the feature maps at 4 px and after each block)."""
        return self.synthesis(self.mapping(z), features)

    def modulation_parameter_names(self) -> list[str]:
        """The small set a `modulation` adaptation trains: per-channel gains and biases (and the style vector)."""
        return [name for name, _ in self.named_parameters() if name.endswith((".gain", ".bias")) or
                name in ("gain", "bias", "style")]


SPECTRAL_ITERATIONS = 10  # power iterations per forward: within 0.1 % of the exact norm on trained weights


def spectral_normalised(weight: torch.Tensor, iterations: int = SPECTRAL_ITERATIONS) -> torch.Tensor:
    """`weight` [out, ...] divided by its largest singular value (as a matrix [out, rest]), estimated by power
    iteration from a fixed start vector. Nothing is carried between calls (torch's `spectral_norm` keeps `u` in a
    buffer that every forward updates), so the same weights always give the same result: `functional_call`,
    `vmap`, CUDA graphs and exact resume need no extra state. As in torch's, u and v are constants for autograd."""
    w = weight.flatten(1).float()
    with torch.no_grad(), torch.autocast(w.device.type, enabled=False):
        u = torch.cos(torch.arange(w.shape[0], device=w.device, dtype=w.dtype) * 2.399963 + 0.5)  # golden angle
        u = F.normalize(u, dim=0)
        for _ in range(iterations):
            v = F.normalize(w.t() @ u, dim=0)
            u = F.normalize(w @ v, dim=0)
    with torch.autocast(w.device.type, enabled=False):
        sigma = torch.dot(u, w @ v)
    return weight / sigma.to(weight.dtype)


class DCGANDiscriminator(nn.Module):
    """image [N, 3, R, R] -> logit [N]: strided 4x4 convs with LeakyReLU 0.2 down to 4x4, the minibatch-std
    feature, a 4x4 conv to one logit. Blocks are ordered from the input side, so FreezeD freezes a prefix.
    With `cfg.spectral_norm` every conv runs with its spectrally normalised weight (the textbook DCGAN
    discriminator of the transfer baseline; the stored parameter is the raw weight)."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        chans, res = [3], cfg.resolution
        while res > 4:
            res //= 2
            chans.append(cfg.channels(res))
        self.blocks = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1) for i in range(len(chans) - 1))
        self.out = nn.Conv2d(chans[-1] + int(cfg.mbstd), 1, 4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        if cfg.style_lr_mul:
            # projection discriminator (Miyato & Koyama 2018): the logit gains <style, mean-pooled features>;
            # pretraining swaps in [N, C], one row per image's style
            self.style = nn.Parameter(torch.zeros(chans[-1]))

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        weight = spectral_normalised(conv.weight) if self.cfg.spectral_norm else conv.weight
        return F.conv2d(x, weight, conv.bias, conv.stride, conv.padding)

    def trunk(self, img: torch.Tensor) -> torch.Tensor:  # [N, 3, R, R] -> [N, C, 4, 4]
        x = img
        for block in self.blocks:
            x = F.leaky_relu(self._conv(block, x), 0.2)
        return x

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # [N, 3, R, R] -> [N]
        x = self.trunk(img)
        projection = None
        if self.cfg.style_lr_mul:
            projection = (x.float().mean(dim=(2, 3)) * (self.style * self.cfg.style_lr_mul)).sum(dim=1)
        if self.cfg.mbstd:
            std = (x - x.mean(dim=0, keepdim=True)).square().mean(dim=0).add(1e-8).sqrt().mean()
            x = torch.cat([x, std.expand(x.shape[0], 1, 4, 4).to(x.dtype)], dim=1)
        logits = self._conv(self.out, x).flatten().float()
        return logits if projection is None else logits + projection

    def frozen_parameter_names(self, blocks: int) -> list[str]:
        """FreezeD: the first `blocks` strided convs (capped so the last one and the head always train)."""
        blocks = min(blocks, len(self.blocks) - 1)
        prefixes = tuple(f"blocks.{i}." for i in range(max(blocks, 0)))
        return [name for name, _ in self.named_parameters() if prefixes and name.startswith(prefixes)]


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """The generator `cfg.arch` names."""
    return DCGANGenerator(cfg) if cfg.arch == "dcgan" else Generator(cfg)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """The discriminator `cfg.arch` names."""
    if cfg.arch == "projected":
        return ProjectedDiscriminator(cfg)
    return DCGANDiscriminator(cfg) if cfg.arch == "dcgan" else Discriminator(cfg)
