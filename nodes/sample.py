"""Sampling and interpolation from a (adapted) MetaGAN."""
from __future__ import annotations

from ..meta_core import interpolate, sample
from ..meta_core.errors import ConfigError
from .common import MAX_OUTPUT_BYTES, META_GAN, Progress, nchw_to_image



def check_output_size(count: int, resolution: int) -> None:
    size = count * resolution * resolution * 3 * 4
    if size > MAX_OUTPUT_BYTES:
        raise ConfigError(f"{count} images at {resolution}px need {size / 2**30:.1f} GiB as one IMAGE batch: ask for "
                          f"at most {MAX_OUTPUT_BYTES // (resolution * resolution * 12)} per run and vary the seed")


SEED = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                "tooltip": "Seed: image i of a seed is always the same image, whatever the count or device."})
TRUNCATION = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                        "tooltip": "1 is full variety; lower values pull towards the average image (cleaner, "
                                   "less varied)."})


class MetaGANSample:
    DESCRIPTION = "Generate images from a MetaGAN: `count` images of `seed`, reproducible on any device."
    CATEGORY = "MetaGAN/sample"
    FUNCTION = "sample"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The generated images, [count, H, W, 3] in 0..1.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "meta_gan": (META_GAN, {"tooltip": "The model to sample, adapted or not."}),
            "seed": SEED,
            "count": ("INT", {"default": 16, "min": 1, "max": 65536,
                              "tooltip": "How many images; large counts are generated in chunks."}),
            "truncation": TRUNCATION,
        }}

    def sample(self, meta_gan, seed, count, truncation):
        check_output_size(count, meta_gan.resolution)
        progress = Progress(count)
        images = sample(meta_gan, seed, count, truncation, on_chunk=lambda done, total: progress(done, total))
        return (nchw_to_image(images),)


class MetaGANInterpolate:
    DESCRIPTION = ("Frames morphing from the first image of seed_a to the first image of seed_b; feed them to "
                   "Save Animated WEBP for an animation.")
    CATEGORY = "MetaGAN/sample"
    FUNCTION = "interpolate"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frames, [frames, H, W, 3] in 0..1, first and last are the two seeds' images.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "meta_gan": (META_GAN, {"tooltip": "The model to animate."}),
            "seed_a": dict_copy(SEED, "Seed of the first frame's image."),
            "seed_b": dict_copy(SEED, "Seed of the last frame's image.", default=1),
            "frames": ("INT", {"default": 24, "min": 2, "max": 4096,
                               "tooltip": "Number of frames, both ends included."}),
            "truncation": TRUNCATION,
            "space": (["w", "z"], {"tooltip": "w: linear in style space (smoothest); z: spherical in latent space."}),
        }}

    def interpolate(self, meta_gan, seed_a, seed_b, frames, truncation, space="w"):
        check_output_size(frames, meta_gan.resolution)
        Progress(1)(0)  # honour a pending cancel before starting
        return (nchw_to_image(interpolate(meta_gan, seed_a, seed_b, frames, truncation, space)),)


def dict_copy(spec, tooltip, **changes):
    kind, options = spec
    return (kind, {**options, "tooltip": tooltip, **changes})


NODE_CLASS_MAPPINGS = {"MetaGANSample": MetaGANSample, "MetaGANInterpolate": MetaGANInterpolate}
NODE_DISPLAY_NAME_MAPPINGS = {"MetaGANSample": "MetaGAN Sample", "MetaGANInterpolate": "MetaGAN Interpolate"}
