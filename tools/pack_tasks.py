"""Pack a task folder into a few small files, and unpack it again, pixel-exact.

DiceBear renders are flat-coloured, so their raw pixels compress about six times better with LZMA than
as separate PNGs: this is how task data travels to a machine that cannot render it (a lent GPU has no
npm). PNG is lossless, so unpacking gives back exactly the pixels that were packed.

    python tools/pack_tasks.py pack data/dicebear64/train packed64 --exclude glass,icons --limit 300
    python tools/pack_tasks.py unpack packed64 data/train64
"""
from __future__ import annotations

import argparse
import json
import lzma
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def pack(src: Path, dst: Path, exclude: set[str], limit: int | None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for task in sorted(p for p in src.iterdir() if p.is_dir() and p.name not in exclude):
        files = sorted(f for f in task.iterdir() if f.suffix.lower() in SUFFIXES)[:limit]
        if not files:
            continue
        pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        (dst / f"{task.name}.u8.xz").write_bytes(lzma.compress(pixels.tobytes(), preset=6))
        manifest[task.name] = {"shape": list(pixels.shape), "files": [f.stem for f in files]}
        print(f"{task.name}: {len(files)} images", file=sys.stderr)
    (dst / "manifest.json").write_text(json.dumps(manifest))


def _unpack_task(args) -> str:
    src, dst, name, entry = args
    pixels = np.frombuffer(lzma.decompress((Path(src) / f"{name}.u8.xz").read_bytes()), np.uint8)
    pixels = pixels.reshape(entry["shape"])
    out = Path(dst) / name
    out.mkdir(parents=True, exist_ok=True)
    for stem, image in zip(entry["files"], pixels):
        Image.fromarray(image).save(out / f"{stem}.png")
    return name


def unpack(src: Path, dst: Path) -> None:
    manifest = json.loads((src / "manifest.json").read_text())
    jobs = [(str(src), str(dst), name, entry) for name, entry in manifest.items()]
    with ProcessPoolExecutor() as pool:
        for name in pool.map(_unpack_task, jobs):
            print(f"{name}: unpacked", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack")
    pk.add_argument("src", type=Path)
    pk.add_argument("dst", type=Path)
    pk.add_argument("--exclude", default="", help="comma-separated task names to leave out")
    pk.add_argument("--limit", type=int, help="at most this many images per task (the first, sorted by name)")
    up = sub.add_parser("unpack")
    up.add_argument("src", type=Path)
    up.add_argument("dst", type=Path)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.src, args.dst, {x for x in args.exclude.split(",") if x}, args.limit)
    else:
        unpack(args.src, args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
