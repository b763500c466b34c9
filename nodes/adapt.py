"""Few-shot adaptation of a MetaGAN to reference images."""
from __future__ import annotations

import dataclasses
import math

import torch

from ..meta_core import adapt as adapt_model
from ..meta_core.config import AugmentConfig
from ..meta_core.errors import ConfigError
from ..meta_core.fastpath import FastPath
from ..meta_core.images import prepare_references
from ..meta_core.sampling import sample
from ..meta_core.seeding import latents
from .common import META_GAN, Progress, grid, image_to_nchw

DEFAULT = "checkpoint default"
AUGMENT_CHOICES = {"diffaugment": AugmentConfig(), "translation only": AugmentConfig(ops=("translation",)),
                   "adaptive (ADA)": AugmentConfig(probability=0.5, adaptive=True), "off": AugmentConfig(ops=())}
DEFAULT_ANCHOR_WEIGHT = -1.0  # 0 is a real setting (anchors off), so the checkpoint's default needs its own value
PREVIEW_COUNT = 8
PREVIEW_COLUMNS = 4  # references in a 4 x 2 block above samples in a 4 x 2 block: a square that reads at a glance
PREVIEW_UPDATES = 10  # live previews per run


def adaptation_config(model, steps, learning_rate, strategy, augment, anchor_weight=DEFAULT_ANCHOR_WEIGHT):
    """The checkpoint's defaults, with the node's non-default widgets applied."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ConfigError(f"steps {steps!r} must be 0 (the checkpoint's default) or a positive integer")
    if not isinstance(learning_rate, (int, float)) or not math.isfinite(learning_rate) or learning_rate < 0:
        raise ConfigError(f"learning_rate {learning_rate!r} must be 0 (the checkpoint's default) or a positive, finite "
                          "number such as 0.002")
    if (not isinstance(anchor_weight, (int, float)) or not math.isfinite(anchor_weight)
            or (anchor_weight < 0 and anchor_weight != DEFAULT_ANCHOR_WEIGHT)):
        raise ConfigError(f"anchor_weight {anchor_weight!r} must be -1 (the checkpoint's default), 0 (no anchors) or "
                          "a positive, finite number such as 10")
    if augment != DEFAULT and augment not in AUGMENT_CHOICES:
        raise ConfigError(f"unknown augment {augment!r}: choose one of {', '.join([DEFAULT, *AUGMENT_CHOICES])}")
    changes = {}
    if steps > 0:
        changes["steps"] = steps
    if learning_rate > 0:
        changes.update(lr_g=learning_rate, lr_d=learning_rate)
    if strategy != DEFAULT:
        changes["strategy"] = strategy
    if augment != DEFAULT:
        changes["augment"] = AUGMENT_CHOICES[augment]
    if anchor_weight != DEFAULT_ANCHOR_WEIGHT:
        changes["anchor_weight"] = float(anchor_weight)
    return dataclasses.replace(model.adapt_defaults, **changes)


class MetaGANFewShotAdapt:
    DESCRIPTION = ("Adapt a meta-learned GAN to a few reference images of one character or style (1-64 images, "
                   "any size). Returns a new model (the loaded one is untouched) and a preview grid: references on "
                   "top, fresh samples below. Cancel stops it within ten steps (a few seconds).")
    CATEGORY = "MetaGAN/adapt"
    FUNCTION = "adapt"
    RETURN_TYPES = (META_GAN, "IMAGE")
    RETURN_NAMES = ("meta_gan", "preview")
    OUTPUT_TOOLTIPS = ("The adapted model; feed it to MetaGAN Sample, Interpolate or Save Adapted.",
                       "References (top row) beside samples of the adapted model (bottom row).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "meta_gan": (META_GAN, {"tooltip": "The model to adapt, from Load MetaGAN."}),
            "references": ("IMAGE", {"tooltip": "1 to 64 images of the character or style, any size."}),
            "steps": ("INT", {"default": 0, "min": 0, "max": 5000,
                              "tooltip": "Adaptation steps; 0 uses the checkpoint's default (chosen on "
                                         "validation styles)."}),
            "learning_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.1, "step": 0.0001, "round": False,
                                        "tooltip": "Adam learning rate of G and D; 0 uses the checkpoint's default."}),
            "strategy": ([DEFAULT, "full", "freeze_d", "modulation"],
                         {"tooltip": "What adapts: full (G and D), freeze_d (lower D blocks frozen), modulation "
                                     "(only G's styles and biases: smallest change, saves as a small delta)."}),
            "augment": ([DEFAULT, *AUGMENT_CHOICES],
                        {"tooltip": "Differentiable augmentation of real and fake images: keeps D from memorising "
                                    "few references. diffaugment shifts colours, translates and cuts out; "
                                    "translation only keeps the references' colours (the 64 px default)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Seed of every random draw of the adaptation, and of the preview samples."}),
        }, "optional": {
            # Optional and last, so workflows saved before it existed keep their widget values in place.
            "anchor_weight": ("FLOAT", {"default": DEFAULT_ANCHOR_WEIGHT, "min": -1.0, "max": 100.0, "step": 0.5,
                                        "round": False,
                                        "tooltip": "How strongly each reference's nearest prior sample is pulled "
                                                   "onto it: higher copies the references' layouts more closely, "
                                                   "0 turns anchors off (more varied, less faithful); -1 uses the "
                                                   "checkpoint's default (10 for the bundled 64 px model)."}),
        }}

    def adapt(self, meta_gan, references, steps, learning_rate, strategy, augment, seed,
              anchor_weight=DEFAULT_ANCHOR_WEIGHT):
        cfg = adaptation_config(meta_gan, steps, learning_rate, strategy, augment, anchor_weight)
        refs = image_to_nchw(references)
        progress = Progress(cfg.steps)
        z_preview = latents(seed, 0, PREVIEW_COUNT, meta_gan.config.generator.z_dim)
        every = max(1, cfg.steps // PREVIEW_UPDATES)

        def on_step(p):
            shown = grid(list(p.preview(z_preview).split(PREVIEW_COLUMNS))) if p.step % every == 0 else None
            progress(p.step, p.total, shown)

        result = adapt_model(meta_gan, refs, cfg, generator=torch.Generator().manual_seed(seed), on_step=on_step,
                             fast=FastPath())
        shown_refs = prepare_references(refs[:PREVIEW_COUNT], meta_gan.resolution)
        samples = sample(result.model, seed, PREVIEW_COUNT)
        preview = grid([*shown_refs.split(PREVIEW_COLUMNS), *samples.split(PREVIEW_COLUMNS)])
        return (result.model, preview)


NODE_CLASS_MAPPINGS = {"MetaGANFewShotAdapt": MetaGANFewShotAdapt}
NODE_DISPLAY_NAME_MAPPINGS = {"MetaGANFewShotAdapt": "Few-Shot Adapt (MetaGAN)"}
