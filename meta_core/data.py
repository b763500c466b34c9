"""Image folders and task sets for meta-training.

A task is a small set of images of one style or character. Tasks come from a folder with one
sub-folder per task, or from a flat folder of unlabeled images split into pseudo-tasks by k-means.
Images are kept as uint8 [N, 3, R, R] on the CPU (a quarter of float32) and converted per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .images import composite, to_square

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
REDUCE_ABOVE = 2048  # a shorter side beyond this is box-reduced by PIL before conversion (8192^2: MBs, not GBs)


def _reduced(im: Image.Image, min_side: int | None) -> Image.Image:
    """`im` box-reduced by an integer factor that keeps its shorter side at least 2 * min_side (alpha premultiplied)."""
    side = min(im.size)
    if not min_side or side <= REDUCE_ABOVE or side < 4 * min_side:
        return im
    factor = side // (2 * min_side)
    if im.mode in ("RGBA", "LA"):
        premultiplied = {"RGBA": "RGBa", "LA": "La"}[im.mode]
        return im.convert(premultiplied).reduce(factor).convert(im.mode)
    return im.reduce(factor)


def read_image(path, min_side: int | None = None) -> torch.Tensor:
    """An image file as [C, H, W] float32 in 0..1 (C = 1, 2, 3 or 4; 16-bit kept at full precision).

    `min_side`: the side it will be resized to; an image far larger (shorter side above `REDUCE_ABOVE`)
    is box-reduced first, keeping at least twice that, so huge files do not cost gigabytes of floats.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.seek(0)  # first frame of animations
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                if im.mode != "I" and min(im.size) > REDUCE_ABOVE:
                    im = im.convert("I")  # PIL reduces 32-bit "I", not "I;16"
                arr = np.asarray(_reduced(im, min_side), dtype=np.float32)
                # 16-bit data (older Pillow opens 16-bit PNGs as "I"); full 32-bit range only beyond that
                arr /= 65535.0 if float(arr.max(initial=0.0)) <= 65535.0 else 2147483647.0
                return torch.from_numpy(arr.copy())[None].clamp(0, 1)
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if ("transparency" in im.info or im.mode in ("P", "PA", "LA")) else "RGB")
            arr = np.asarray(_reduced(im, min_side), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read this image ({exc.__class__.__name__}: {exc}); "
                        "remove or re-save it") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def list_images(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def load_image_folder(folder, resolution: int, background=(1.0, 1.0, 1.0), limit: int | None = None) -> torch.Tensor:
    """Every image in `folder` (non-image files are skipped) as uint8 [N, 3, R, R]."""
    paths = list_images(folder)[:limit]
    if not paths:
        raise DataError(f"{folder}: holds no images ({', '.join(IMAGE_EXTENSIONS)}); add some or pick another folder")
    out = torch.empty(len(paths), 3, resolution, resolution, dtype=torch.uint8)
    for i, p in enumerate(paths):
        img = read_image(p, resolution)
        if min(img.shape[1:]) < 8:
            raise DataError(f"{p}: {img.shape[2]}x{img.shape[1]} pixels is too small; use images of at least 8x8")
        out[i] = (to_square(composite(img, background), resolution).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return out


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> float32 in [-1, 1]."""
    return images_u8.float() / 127.5 - 1.0


@dataclass
class TaskSet:
    names: list[str]
    images: list[torch.Tensor]  # per task, uint8 [n_i, 3, R, R]
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_images(self) -> int:
        return sum(int(t.shape[0]) for t in self.images)

    def describe(self) -> dict:
        return {"source": self.source, "tasks": len(self), "images": self.num_images}


def load_task_folder(folder, resolution: int, background=(1.0, 1.0, 1.0), limit_per_task: int | None = None,
                     exclude: tuple[str, ...] = ()) -> TaskSet:
    """One task per sub-folder holding images; sub-folders named in `exclude` are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give a folder with one sub-folder of images per task")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in exclude and not p.name.startswith("."))
    names, images = [], []
    for sub in subdirs:
        if list_images(sub):
            names.append(sub.name)
            images.append(load_image_folder(sub, resolution, background, limit_per_task))
    if not names:
        raise DataError(f"{folder}: no sub-folder holds images; lay tasks out as {folder}/<task>/<image>.png, or use "
                        "--unlabeled for a flat folder")
    return TaskSet(names, images, source=str(folder))


def image_features(images_u8: torch.Tensor) -> torch.Tensor:
    """Cheap appearance features for clustering: an 8x8 thumbnail plus per-channel mean and std."""
    x = to_float(images_u8)
    thumb = F.adaptive_avg_pool2d(x, 8).flatten(1)
    stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
    return torch.cat([thumb, stats * 4.0], dim=1)


def kmeans(features: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """k-means++ then Lloyd iterations. Returns cluster labels [N]."""
    n = features.shape[0]
    centres = features[torch.randint(0, n, (1,), generator=generator)]
    for _ in range(1, k):
        d2 = torch.cdist(features, centres).min(dim=1).values.square()
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        centres = torch.cat([centres, features[torch.multinomial(probs, 1, generator=generator)]])
    labels = torch.cdist(features, centres).argmin(dim=1)
    for _ in range(iterations):
        new = torch.stack([features[labels == j].mean(dim=0) if bool((labels == j).any()) else centres[j]
                           for j in range(k)])
        new_labels = torch.cdist(features, new).argmin(dim=1)
        centres = new
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def pseudo_tasks(images_u8: torch.Tensor, clusters: int, seed: int = 0, source: str = "") -> TaskSet:
    """Split unlabeled images into `clusters` pseudo-tasks by k-means over `image_features`."""
    n = images_u8.shape[0]
    if clusters < 1 or clusters > n:
        raise DataError(f"cannot make {clusters} clusters from {n} images: choose --clusters between 1 and {n}")
    labels = kmeans(image_features(images_u8), clusters, torch.Generator().manual_seed(seed))
    names, images = [], []
    for j in range(clusters):
        members = (labels == j).nonzero().flatten()
        if len(members):
            names.append(f"cluster-{j:03d}")
            images.append(images_u8[members])
    return TaskSet(names, images, source=source)


def load_unlabeled_folder(folder, resolution: int, clusters: int, seed: int = 0,
                          background=(1.0, 1.0, 1.0), exclude: tuple[str, ...] = ()) -> TaskSet:
    """A flat folder of images (sub-folders are walked too, labels ignored) split into pseudo-tasks.
    Sub-folders named in `exclude` are skipped with everything below them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give a folder of images")
    dirs = [folder] + sorted(p for p in folder.rglob("*") if p.is_dir()
                             and not set(p.relative_to(folder).parts) & set(exclude))
    batches = [load_image_folder(d, resolution, background) for d in dirs if list_images(d)]
    if not batches:
        raise DataError(f"{folder}: holds no images; add some or pick another folder")
    return pseudo_tasks(torch.cat(batches), clusters, seed, source=str(folder))
