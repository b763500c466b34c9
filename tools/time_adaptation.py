"""Time a checkpoint's adaptation alone (what the Few-Shot Adapt node runs), as the 60 s budget is stated.

    python tools/time_adaptation.py --checkpoint checkpoints/metagan_64.safetensors \
        --references data/dicebear64/train/dylan --shots 10 --repeats 3 [--set steps=220]

Adapts on the fast path (`FastPath()`, as the node and `adapt` do) `--repeats` times with seeds 0, 1, ... and
prints each run's wall time and the largest. Run it on an otherwise idle machine: other busy processes make it
several times slower (see README, Speed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from meta_core import FastPath, adapt, load  # noqa: E402
from meta_core.app.bench_speed import describe_device  # noqa: E402
from meta_core.config import apply_overrides  # noqa: E402
from meta_core.data import load_image_folder, to_float  # noqa: E402


def time_runs(model, references, cfg, repeats: int) -> list[float]:
    seconds = []
    for seed in range(repeats):
        start = time.perf_counter()
        adapt(model, references, cfg, seed=seed, fast=FastPath())
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--references", required=True, help="a folder of reference images")
    p.add_argument("--shots", type=int, default=10, help="use the folder's first N images (sorted by name)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", default="", help="change the stored adaptation defaults, e.g. steps=220,lr_g=4e-4")
    args = p.parse_args(argv)
    model = load(args.checkpoint)
    cfg = apply_overrides(model.adapt_defaults, args.set) if args.set else model.adapt_defaults
    references = to_float(load_image_folder(args.references, model.resolution, limit=args.shots)) * 0.5 + 0.5
    print(f"{describe_device(torch.device('cpu'))}; fast path {FastPath().resolve('cpu').describe()}", flush=True)
    seconds = time_runs(model, references, cfg, args.repeats)
    print(f"{args.checkpoint}: {references.shape[0]} references, {cfg.steps} steps at batch {cfg.batch_size}, "
          f"fast path: " + ", ".join(f"{s:.1f} s" for s in seconds) + f"; largest {max(seconds):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
