"""Compose assets/readme_preview.png: the main workflow's references (top row) over its samples (bottom row).

    python run_workflow.py workflows/metagan_fewshot_main.json --output output
    python tools/readme_preview.py --references assets/references/micah --samples output/metagan
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

CELL, GAP = 64, 2


def first_pngs(folder: Path, count: int) -> list[Image.Image]:
    paths = sorted(p for p in folder.glob("*.png") if "preview" not in p.name)[:count]
    if len(paths) < count:
        raise SystemExit(f"{folder}: {len(paths)} PNGs, need {count}; run the main workflow first (see --help)")
    return [Image.open(p).convert("RGB").resize((CELL, CELL), Image.LANCZOS) for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--references", type=Path, required=True)
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("assets/readme_preview.png"))
    args = ap.parse_args()
    rows = [first_pngs(args.references, args.count), first_pngs(args.samples, args.count)]
    sheet = Image.new("RGB", (GAP + args.count * (CELL + GAP), GAP + len(rows) * (CELL + GAP)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (GAP + c * (CELL + GAP), GAP + r * (CELL + GAP)))
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
