"""Tiny configs and data for fast tests (channels 8-16, 16-32 px)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from meta_core import AdaptConfig, AugmentConfig, LossConfig, MetaGAN, ModelConfig, PretrainConfig, Pretrainer
from meta_core.data import TaskSet


def tiny_config(resolution: int = 16) -> ModelConfig:
    return ModelConfig.for_resolution(resolution, channel_base=16 * resolution, channel_max=16, z_dim=16, w_dim=16,
                                      mapping_layers=2)


def tiny_model(resolution: int = 16, seed: int = 0, device="cpu") -> MetaGAN:
    return MetaGAN.create(tiny_config(resolution), seed=seed).to(device)


def tiny_adapt(**changes) -> AdaptConfig:
    base = dict(steps=3, batch_size=4, strategy="full", loss=LossConfig(r1_interval=2),
                augment=AugmentConfig(probability=0.8))
    base.update(changes)
    return AdaptConfig(**base)


def random_images(n: int, size: int = 16, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def write_task_folder(root: Path, tasks: int = 3, per_task: int = 5, size: int = 20, seed: int = 0) -> Path:
    """Tasks whose images share a base colour, so pseudo-task clustering has structure to find."""
    rng = np.random.default_rng(seed)
    for t in range(tasks):
        folder = root / f"style{t}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros(3)
        base[t % 3] = 1.0
        for i in range(per_task):
            img = 0.8 * base[None, None, :] + 0.2 * rng.random((size, size, 3))
            Image.fromarray((img * 255).astype("uint8")).save(folder / f"{i:03d}.png")
    return root


def params_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


STYLE_LR_MUL = 20.0


def tiny_dcgan(seed: int = 0) -> MetaGAN:
    return MetaGAN.create(ModelConfig.for_resolution(16, channel_base=128, channel_max=16, z_dim=16, arch="dcgan"),
                          seed=seed)


def three_tasks() -> TaskSet:
    g = torch.Generator().manual_seed(0)
    return TaskSet(list("abc"), [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g) for _ in "abc"])


def tiny_recipe() -> PretrainConfig:
    adapt = tiny_adapt()
    return PretrainConfig(lr_g=0.01, lr_d=0.01, batch_size=4, seed=5, augment=adapt.augment, loss=adapt.loss)


def trained_styles(steps: int = 3) -> Pretrainer:
    """A tiny class-conditional run on three tasks after a few steps."""
    trainer = Pretrainer(tiny_dcgan().with_style_vectors(STYLE_LR_MUL), three_tasks(), tiny_recipe())
    for _ in range(steps):
        trainer.step()
    return trainer
