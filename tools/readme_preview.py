"""Compose assets/readme_preview.png: the main workflow's references (top row) over its samples (bottom row).

    python run_workflow.py workflows/metagan_fewshot_main.json --output output
    python tools/readme_preview.py --references assets/references/micah --samples output/metagan
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from meta_core.images import tile  # noqa: E402

CELL, GAP = 64, 2


def first_pngs(folder: Path, count: int) -> torch.Tensor:
    """The first `count` PNGs of `folder` (not previews) as [count, 3, CELL, CELL] in 0..1."""
    paths = sorted(p for p in folder.glob("*.png") if "preview" not in p.name)[:count]
    if len(paths) < count:
        raise SystemExit(f"{folder}: {len(paths)} PNGs, need {count}; run the main workflow first (see --help)")
    images = [np.asarray(Image.open(p).convert("RGB").resize((CELL, CELL), Image.LANCZOS)) for p in paths]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--references", type=Path, required=True)
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("assets/readme_preview.png"))
    args = ap.parse_args()
    rows = [first_pngs(args.references, args.count), first_pngs(args.samples, args.count)]
    sheet = tile(rows, pad=GAP).permute(1, 2, 0).mul(255).round().byte().numpy()
    Image.fromarray(sheet).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
