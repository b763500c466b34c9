"""Stand-in for ComfyUI's core ``nodes`` module: the image nodes our shipped workflows use.

Mirrors ComfyUI v0.3.64 (see ``comfy_stubs/README.md``). ``LoadImage``, ``SaveImage``,
``PreviewImage`` and ``ImageBatch`` keep ComfyUI's node ids, ``INPUT_TYPES``, ``RETURN_TYPES``,
``FUNCTION``, ``OUTPUT_NODE``, ``CATEGORY`` and display names, so a workflow saved in ComfyUI
validates and runs the same here. Their behaviour is ComfyUI's:

- ``LoadImage`` reads a file from the input directory (annotated names such as
  ``"x.png [output]"`` work), applies the EXIF orientation, returns IMAGE ``[B,H,W,3]`` in 0..1 and
  MASK ``[B,H,W]`` = 1 - alpha (a 64x64 zero mask when there is no alpha); frames of an animated
  file that share the first frame's size become the batch.
- ``SaveImage`` writes ``<prefix>_<counter:05>_.png`` into the output directory with the
  ``prompt`` and every ``extra_pnginfo`` entry (normally ``workflow``) as PNG text chunks, unless
  ``comfy.cli_args.args.disable_metadata`` is set, and returns ComfyUI's ``{"ui": {"images": ...}}``.
- ``PreviewImage`` does the same into the temp directory with a random suffix, compress level 1.
- ``ImageBatch`` concatenates two batches, resizing the second (bilinear, centre crop) if needed.

Also here, as in ComfyUI: ``MAX_RESOLUTION``, ``before_node_execution()`` and
``interrupt_processing(value=True)``. Every other core node and the custom-node loader are absent:
``NODE_CLASS_MAPPINGS`` lists only these four.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

import comfy.model_management
import comfy.utils
import folder_paths
from comfy.cli_args import args

MAX_RESOLUTION = 16384


def before_node_execution():
    comfy.model_management.throw_exception_if_processing_interrupted()


def interrupt_processing(value=True):
    comfy.model_management.interrupt_current_processing(value)


def _pillow(fn, arg):
    """Call a PIL function, retrying with truncated-image loading on PIL's known spurious errors."""
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _to_pil(image: torch.Tensor) -> Image.Image:
    """One IMAGE ``[H,W,C]`` in 0..1 to an 8-bit PIL image."""
    return Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8))


class SaveImage:
    def __init__(self):
        self.output_dir = folder_paths.get_output_directory()
        self.type = "output"
        self.prefix_append = ""
        self.compress_level = 4

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(
            filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])
        results = []
        for batch_number, image in enumerate(images):
            metadata = None
            if not args.disable_metadata:
                metadata = PngInfo()
                if prompt is not None:
                    metadata.add_text("prompt", json.dumps(prompt))
                for key, value in (extra_pnginfo or {}).items():
                    metadata.add_text(key, json.dumps(value))
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            _to_pil(image).save(os.path.join(folder, name), pnginfo=metadata, compress_level=self.compress_level)
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    def __init__(self):
        self.output_dir = folder_paths.get_temp_directory()
        self.type = "temp"
        self.prefix_append = "_temp_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
        self.compress_level = 1

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }


class LoadImage:
    @classmethod
    def INPUT_TYPES(s):
        input_dir = folder_paths.get_input_directory()
        # ComfyUI creates the input folder at start-up; the stub does not, so a missing one is empty.
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))] if os.path.isdir(input_dir) else []
        files = folder_paths.filter_files_content_types(files, ["image"])
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        image_path = folder_paths.get_annotated_filepath(image)
        img = _pillow(Image.open, image_path)
        images, masks = [], []
        size = None
        for frame in ImageSequence.Iterator(img):
            frame = _pillow(ImageOps.exif_transpose, frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None])
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32, device="cpu")
            masks.append(mask.unsqueeze(0))
        if len(images) > 1 and img.format not in ("MPO",):
            return (torch.cat(images, dim=0), torch.cat(masks, dim=0))
        return (images[0], masks[0])

    @classmethod
    def IS_CHANGED(s, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).digest().hex()

    @classmethod
    def VALIDATE_INPUTS(s, image):
        if not folder_paths.exists_annotated_filepath(image):
            return "Invalid image file: {}".format(image)
        return True


class ImageBatch:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    def batch(self, image1, image2):
        if image1.shape[1:] != image2.shape[1:]:
            image2 = comfy.utils.common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1],
                                                "bilinear", "center").movedim(1, -1)
        return (torch.cat((image1, image2), dim=0),)


NODE_CLASS_MAPPINGS = {
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "LoadImage": LoadImage,
    "ImageBatch": ImageBatch,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "LoadImage": "Load Image",
    "ImageBatch": "Batch Images",
}
