"""Loaders: a MetaGAN checkpoint, and a folder of reference images."""
from __future__ import annotations

import os

import folder_paths

from ..meta_core import checkpoint
from ..meta_core.data import list_images, load_image_folder
from ..meta_core.errors import DataError
from .common import (EXAMPLE_PREFIX, EXAMPLE_REFERENCES, MAX_OUTPUT_BYTES, META_GAN, MODEL_CACHE, MODEL_FOLDER,
                     torch_device)


def find_base_for_delta(delta_path: str) -> str:
    """The full checkpoint in the model folders whose content hash a delta names."""
    wanted = checkpoint.read_metadata(delta_path).get("base_hash", "")
    for name in folder_paths.get_filename_list(MODEL_FOLDER):
        path = folder_paths.get_full_path(MODEL_FOLDER, name)
        try:
            meta = checkpoint.read_metadata(path)
        except Exception:  # unreadable neighbours are not this delta's problem
            continue
        if meta.get("model_kind") == checkpoint.MODEL_KIND and meta.get("content_hash") == wanted:
            return path
    raise checkpoint.DeltaBaseMismatchError(delta_path, f"its base model (content hash {wanted[:12]}) is not in the "
                                                        f"{MODEL_FOLDER} folders: put the checkpoint it was adapted "
                                                        "from there")


class MetaGANLoader:
    DESCRIPTION = ("Load a meta-learned GAN checkpoint (.safetensors) from models/meta_gan or the pack's bundled "
                   "checkpoints. Modulation deltas load on top of their base automatically.")
    CATEGORY = "MetaGAN/loaders"
    FUNCTION = "load"
    RETURN_TYPES = (META_GAN,)
    RETURN_NAMES = ("meta_gan",)
    OUTPUT_TOOLTIPS = ("The loaded generator/discriminator pair with its adaptation defaults.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ckpt_name": (folder_paths.get_filename_list(MODEL_FOLDER),
                          {"tooltip": "Checkpoint file in models/meta_gan or the pack's bundled checkpoints."}),
        }}

    def load(self, ckpt_name):
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, ckpt_name)
        device = torch_device()
        if checkpoint.read_metadata(path)["model_kind"] == checkpoint.DELTA_KIND:
            base = MODEL_CACHE.load(find_base_for_delta(path), device)
            return (checkpoint.load_delta(base, path),)
        return (MODEL_CACHE.load(path, device),)


def reference_folders() -> list[str]:
    """Bundled example folders first, then sub-folders of ComfyUI's input folder that hold images."""
    found = []
    if os.path.isdir(EXAMPLE_REFERENCES):
        found += [EXAMPLE_PREFIX + d for d in sorted(os.listdir(EXAMPLE_REFERENCES))
                  if os.path.isdir(os.path.join(EXAMPLE_REFERENCES, d))]
    input_dir = folder_paths.get_input_directory()
    if os.path.isdir(input_dir):
        for root, dirs, _ in os.walk(input_dir):
            dirs.sort()
            rel = os.path.relpath(root, input_dir).replace(os.sep, "/")
            if rel != "." and not rel.startswith(EXAMPLE_PREFIX) and list_images(root):
                found.append(rel)
    return found


def resolve_reference_folder(folder: str) -> str:
    if folder.startswith(EXAMPLE_PREFIX):
        base, rel = EXAMPLE_REFERENCES, folder[len(EXAMPLE_PREFIX):]
    else:
        base, rel = folder_paths.get_input_directory(), folder
    path = os.path.realpath(os.path.join(base, rel))
    if os.path.commonpath([path, os.path.realpath(base)]) != os.path.realpath(base):
        raise DataError(f"reference folder {folder!r} points outside {base}: pick a folder from the list")
    return path


def parse_color(text: str) -> tuple[float, float, float]:
    value = text.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    try:
        if len(value) != 6:
            raise ValueError
        return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    except ValueError:
        raise DataError(f"background {text!r} is not a colour: write it as #RRGGBB, e.g. #FFFFFF") from None


class MetaGANLoadReferences:
    DESCRIPTION = ("Load every image in a folder as a batch of reference images at one square size, transparent "
                   "pixels composited onto a background colour. Folders: the pack's bundled examples, or "
                   "sub-folders of ComfyUI's input folder.")
    CATEGORY = "MetaGAN/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("references",)
    OUTPUT_TOOLTIPS = ("The reference images as one IMAGE batch [K, size, size, 3].",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": (reference_folders(), {"tooltip": "Folder of reference images: examples/<name> are bundled; "
                                                        "others are sub-folders of ComfyUI's input folder."}),
            "size": ("INT", {"default": 128, "min": 16, "max": 1024, "step": 8,
                             "tooltip": "Square side in pixels every image is centre-cropped and resized to."}),
            "background": ("STRING", {"default": "#FFFFFF",
                                      "tooltip": "Colour (#RRGGBB) shown under transparent pixels."}),
        }}

    @classmethod
    def IS_CHANGED(cls, folder, size, background):
        try:  # re-run when files in the folder change
            path = resolve_reference_folder(folder)
            return [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in list_images(path)]
        except Exception:
            return float("nan")

    def load(self, folder, size, background):
        path = resolve_reference_folder(folder)
        count = len(list_images(path))
        need = count * size * size * 3 * 4  # float32 IMAGE [count, size, size, 3]
        if need > MAX_OUTPUT_BYTES:
            raise DataError(f"reference folder {folder!r} holds {count} images: at {size}px they need "
                            f"{need / 2**30:.1f} GiB as one IMAGE batch; adaptation uses at most 64, so move a "
                            "representative subset into its own folder (or lower size)")
        images = load_image_folder(path, size, parse_color(background))
        return (images.permute(0, 2, 3, 1).float().div(255.0).contiguous(),)


NODE_CLASS_MAPPINGS = {"MetaGANLoader": MetaGANLoader, "MetaGANLoadReferences": MetaGANLoadReferences}
NODE_DISPLAY_NAME_MAPPINGS = {"MetaGANLoader": "Load MetaGAN",
                              "MetaGANLoadReferences": "Load Reference Images (MetaGAN)"}
