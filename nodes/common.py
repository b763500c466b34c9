"""Glue shared by the node families: IMAGE <-> NCHW, progress and cancel, the model folder, the cache.

Nothing here does math; that is `meta_core`'s. ComfyUI modules are imported at call time where they
are only needed then, so importing the pack stays cheap and side-effect free.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import torch

import folder_paths

from ..meta_core import checkpoint
from ..meta_core.errors import ReferenceImageError, TrainingDivergedError
from ..meta_core.images import tile
from ..meta_core.model import MetaGAN

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FOLDER = "meta_gan"
BUNDLED_CHECKPOINTS = os.path.join(PACK_DIR, "checkpoints")
# not "examples/": ComfyUI reads that name as a workflow-template folder
EXAMPLE_REFERENCES = os.path.join(PACK_DIR, "assets", "references")
EXAMPLE_PREFIX = "examples/"
MAX_OUTPUT_BYTES = 4 << 30  # one IMAGE batch; beyond this, ask for fewer images per run
META_GAN = "META_GAN"  # the custom type carried between MetaGAN nodes: a `meta_core.MetaGAN`, never mutated


def register_model_folder() -> None:
    """Register `models/meta_gan` (keeping folders the user configured) plus the bundled checkpoints."""
    if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        paths = [os.path.join(folder_paths.models_dir, MODEL_FOLDER)]
    else:
        paths, _ = folder_paths.folder_names_and_paths[MODEL_FOLDER]
        paths = list(paths)
    if BUNDLED_CHECKPOINTS not in paths:
        paths.append(BUNDLED_CHECKPOINTS)  # last: user folders win on name clashes, and saving goes to the first
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, {".safetensors"})


def save_folder() -> str:
    """Where adapted models are written: the first registered `meta_gan` folder."""
    return folder_paths.folder_names_and_paths[MODEL_FOLDER][0][0]


# --- tensors ---------------------------------------------------------------------------------------

def image_to_nchw(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] 0..1 -> [B, C, H, W] 0..1 (float32, CPU)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ReferenceImageError(f"expected an IMAGE batch [B, H, W, C], got {shape}: connect an IMAGE output "
                                  "(a MASK or LATENT is not an image)")
    return image.detach().float().cpu().permute(0, 3, 1, 2)


def nchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] 0..1 -> ComfyUI IMAGE [B, H, W, C] float32 0..1 (contiguous, CPU).

    Refuses non-finite values: a NaN would be saved as a black pixel, garbage that looks like an image.
    """
    x = x.detach().float().cpu()
    if not bool(torch.isfinite(x.sum())):  # one reduction, no mask the size of the batch
        raise TrainingDivergedError("the model produced NaN or infinite pixels: its weights are broken; reload the "
                                    "checkpoint, or adapt again with a lower learning rate")
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def grid(rows: list[torch.Tensor], pad: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Rows of [N_i, 3, R, R] images (0..1) -> one [1, H, W, 3] IMAGE, rows top to bottom."""
    return nchw_to_image(tile(rows, pad, fill)[None])


# --- progress and cancel ---------------------------------------------------------------------------

class Progress:
    """Reports to ComfyUI's progress bar and turns its interrupt into an exception at each step."""

    def __init__(self, total: int):
        import comfy.utils
        self.bar = comfy.utils.ProgressBar(total)
        self.total = total

    def __call__(self, done: int, total: int | None = None, preview_image: torch.Tensor | None = None) -> None:
        import comfy.model_management
        comfy.model_management.throw_exception_if_processing_interrupted()
        preview = None
        if preview_image is not None:
            from PIL import Image
            arr = (preview_image[0].numpy() * 255 + 0.5).astype("uint8")
            preview = ("JPEG", Image.fromarray(arr), 512)
        self.bar.update_absolute(done, total or self.total, preview)


def torch_device() -> torch.device:
    import comfy.model_management
    return comfy.model_management.get_torch_device()


# --- the model cache ---------------------------------------------------------------------------------

class ModelCache:
    """Loaded checkpoints keyed by (path, modification time, size); a changed file is reloaded.

    Nodes keep no state of their own (ComfyUI may clone node classes); this one explicit cache is
    shared. Cached models are never mutated: adaptation returns new models.
    """

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[tuple, MetaGAN] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: str, device: torch.device) -> MetaGAN:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, str(device))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = checkpoint.load(path, device)
        with self._lock:
            for old in [k for k in self._items if k[0] == key[0]]:
                del self._items[old]  # an older version of the same file
            self._items[key] = model
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return model

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MODEL_CACHE = ModelCache()
