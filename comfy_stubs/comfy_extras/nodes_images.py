"""Stand-in for ``comfy_extras/nodes_images.py``: only ``SaveAnimatedWEBP``.

Mirrors ComfyUI v0.3.64, where ``SaveAnimatedWEBP`` lives in ``comfy_extras/nodes_images.py``
(not in ``nodes.py``). Same id, ``INPUT_TYPES``, ``FUNCTION``, ``OUTPUT_NODE`` and ``CATEGORY``.
It writes ``<prefix>_<counter:05>_.webp`` into the output directory, all frames in one file at
``fps``, with the prompt in EXIF tag 0x0110 (``"prompt:<json>"``) and each ``extra_pnginfo`` entry
in the tags from 0x010F downwards (``"workflow:<json>"``), as ComfyUI does. The other nodes of the
real module (ImageCrop, SaveAnimatedPNG, ...) are absent.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

import folder_paths
from comfy.cli_args import args


class SaveAnimatedWEBP:
    def __init__(self):
        self.output_dir = folder_paths.get_output_directory()
        self.type = "output"
        self.prefix_append = ""

    methods = {"default": 4, "fastest": 0, "slowest": 6}

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (list(s.methods.keys()),),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image/animation"

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, num_frames=0, prompt=None, extra_pnginfo=None):
        method = self.methods.get(method)
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(
            filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])
        frames = [Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)) for image in images]

        exif = frames[0].getexif()
        if not args.disable_metadata:
            if prompt is not None:
                exif[0x0110] = "prompt:{}".format(json.dumps(prompt))
            tag = 0x010F
            for key, value in (extra_pnginfo or {}).items():
                exif[tag] = "{}:{}".format(key, json.dumps(value))
                tag -= 1

        if num_frames == 0:
            num_frames = len(frames)
        results = []
        for start in range(0, len(frames), num_frames):
            name = f"{filename}_{counter:05}_.webp"
            frames[start].save(os.path.join(folder, name), save_all=True, duration=int(1000.0 / fps),
                               append_images=frames[start + 1:start + num_frames], exif=exif,
                               lossless=lossless, quality=quality, method=method)
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results, "animated": (num_frames != 1,)}}


NODE_CLASS_MAPPINGS = {"SaveAnimatedWEBP": SaveAnimatedWEBP}
