"""meta_core: the meta-learned GAN engine of comfyui-metagan. Pure PyTorch; never imports ComfyUI.

Typical use:
    >>> from meta_core import load, adapt, sample
    >>> base = load("metagan_64.safetensors")
    >>> adapted = adapt(base, references, seed=0).model   # references: [K, C, H, W] in 0..1
    >>> images = sample(adapted, seed=42, count=16)        # [16, 3, 64, 64] in 0..1
"""
from .adapt import AdaptResult, AdaptStats, adapt
from .checkpoint import load, load_delta, read_metadata, save, save_delta
from .config import (AdaptConfig, AugmentConfig, DiscriminatorConfig, GeneratorConfig, LossConfig, MetaConfig,
                     ModelConfig)
from .fast import FastPath
from .errors import (CheckpointError, ConfigError, DataError, MetaGANError, ReferenceImageError,
                     TrainingDivergedError)
from .images import prepare_references
from .model import MetaGAN
from .sampling import interpolate, latents, sample

__all__ = [
    "AdaptConfig", "AdaptResult", "AdaptStats", "AugmentConfig", "CheckpointError", "ConfigError", "DataError",
    "DiscriminatorConfig", "FastPath", "GeneratorConfig", "LossConfig", "MetaConfig", "MetaGAN", "MetaGANError", "ModelConfig",
    "ReferenceImageError", "TrainingDivergedError", "adapt", "interpolate", "latents", "load", "load_delta",
    "prepare_references", "read_metadata", "sample", "save", "save_delta",
]
