"""Saving adapted models into the meta_gan model folder."""
from __future__ import annotations

import os
import re

from ..meta_core import checkpoint
from ..meta_core.errors import ConfigError
from .common import META_GAN, register_model_folder, save_folder

RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
EXTENSION = ".safetensors"


def safe_model_path(folder: str, prefix: str) -> tuple[str, str]:
    """A new file under `folder` for the user's `prefix` ("sub/name"): (absolute path, name relative to folder).

    Refuses absolute paths, `..`, empty parts and reserved device names; other odd characters become `_`.
    Never returns an existing file: a counter (`name_00001`) picks the first free name.
    """
    text = prefix.strip().replace("\\", "/")
    if text.lower().endswith(EXTENSION):
        text = text[: -len(EXTENSION)]
    if not text or text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ConfigError(f"filename_prefix {prefix!r} must be a relative name such as 'metagan/my_character'")
    parts = []
    for part in text.split("/"):
        if part in ("", ".", ".."):
            raise ConfigError(f"filename_prefix {prefix!r} must not contain '..' or empty parts: use a name such as "
                              "'metagan/my_character'")
        clean = re.sub(r"[^A-Za-z0-9._ -]", "_", part).strip(" .")
        if not clean or clean.split(".")[0].upper() in RESERVED_NAMES:
            raise ConfigError(f"filename_prefix part {part!r} is not a usable file name: choose another name")
        parts.append(clean[:100])
    root = os.path.realpath(folder)
    directory = os.path.realpath(os.path.join(root, *parts[:-1]))
    if os.path.commonpath([directory, root]) != root:
        raise ConfigError(f"filename_prefix {prefix!r} leads outside the model folder: use a plain relative name")
    counter = 1
    while True:
        name = f"{parts[-1]}_{counter:05d}{EXTENSION}"
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return path, os.path.relpath(path, root).replace(os.sep, "/")
        counter += 1


class MetaGANSaveAdapted:
    DESCRIPTION = ("Save an (adapted) MetaGAN into models/meta_gan under a new numbered name, never overwriting; it "
                   "then appears in Load MetaGAN's list. 'delta' saves only the modulation weights (a small file that "
                   "needs its base checkpoint beside it).")
    CATEGORY = "MetaGAN/save"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("ckpt_name",)
    OUTPUT_TOOLTIPS = ("The saved file's name as Load MetaGAN lists it.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "meta_gan": (META_GAN, {"tooltip": "The model to save, usually from Few-Shot Adapt."}),
            "filename_prefix": ("STRING", {"default": "metagan/character",
                                           "tooltip": "Relative name in models/meta_gan; a counter is appended."}),
            "format": (["full", "delta"], {"tooltip": "full: a complete checkpoint. delta: only the modulation "
                                                      "weights of a model adapted with strategy 'modulation'."}),
        }}

    def save(self, meta_gan, filename_prefix, format="full"):
        register_model_folder()
        path, name = safe_model_path(save_folder(), filename_prefix)
        if format == "delta":
            checkpoint.save_delta(meta_gan, path)
        else:
            checkpoint.save(meta_gan, path)
        return {"ui": {"text": [name]}, "result": (name,)}


NODE_CLASS_MAPPINGS = {"MetaGANSaveAdapted": MetaGANSaveAdapted}
NODE_DISPLAY_NAME_MAPPINGS = {"MetaGANSaveAdapted": "Save Adapted MetaGAN"}
