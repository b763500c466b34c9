"""meta_core: the meta-learned GAN engine of comfyui-metagan. Pure PyTorch; never imports ComfyUI.

Layers, bottom up: config, errors, seeding -> networks, model -> losses, augment, optim -> loop (the one
inner loop, `GANStep`) -> adaptation, meta, pretraining -> sampling, checkpoint, data, images, metrics.
What is built on the engine (command line, benchmarks, data builders, evaluator) is in `meta_core.app`.

Typical use:
    >>> from meta_core import load, adapt, sample
    >>> base = load("metagan_64.safetensors")
    >>> adapted = adapt(base, references, seed=0).model   # references: [K, C, H, W] in 0..1
    >>> images = sample(adapted, seed=42, count=16)        # [16, 3, 64, 64] in 0..1
"""
from .adaptation import AdaptResult, adapt
from .checkpoint import load, load_delta, read_metadata, save, save_delta
from .config import (AdaptConfig, AugmentConfig, DiscriminatorConfig, GeneratorConfig, LossConfig, MetaConfig,
                     ModelConfig)
from .errors import (CheckpointError, ConfigError, DataError, MetaGANError, ReferenceImageError,
                     TrainingDivergedError)
from .fastpath import FastPath
from .images import prepare_references
from .loop import AdaptStats, StepProgress
from .model import MetaGAN
from .pretraining import PretrainConfig, Pretrainer
from .sampling import Sampler, interpolate, sample
from .seeding import latents

__all__ = [
    "AdaptConfig", "AdaptResult", "AdaptStats", "AugmentConfig", "CheckpointError", "ConfigError", "DataError",
    "DiscriminatorConfig", "FastPath", "GeneratorConfig", "LossConfig", "MetaConfig", "MetaGAN", "MetaGANError",
    "ModelConfig", "PretrainConfig", "Pretrainer", "ReferenceImageError", "Sampler", "StepProgress",
    "TrainingDivergedError", "adapt", "interpolate", "latents", "load", "load_delta", "prepare_references",
    "read_metadata", "sample", "save", "save_delta",
]
