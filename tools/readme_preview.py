"""Compose the pictures that show what the workflows make: references on top, what the model made below.

README picture (assets/readme_preview.png): the main workflow's references (top row) over its samples
(bottom row):

    python run_workflow.py example_workflows/metagan_fewshot_main.json --output output
    python tools/readme_preview.py --references assets/references/micah --samples output/metagan

Template thumbnails (``<name>.jpg`` beside each UI workflow, shown on the cards of ComfyUI's template
browser) and the pack icon (assets/icon.png): ``--thumbnails`` runs every shipped workflow headless on
the bundled checkpoint (a minute on a CPU) with one extra MetaGANSample + SaveImage fed by its Few-Shot
Adapt node, and makes a square sheet of each: a row of its references over three rows of samples (the
interpolation workflow: three rows of its animation's frames):

    python tools/readme_preview.py --thumbnails
    python tools/readme_preview.py --thumbnails --only metagan_fewshot_128   # one workflow's card
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from meta_core.images import tile  # noqa: E402

CELL, GAP = 64, 2
THUMB_CELL, THUMB_COLUMNS, THUMB_ROWS, THUMB_GAP = 124, 4, 3, 4   # 4 x 4 cells of 124 px: a 516 x 524 card
ICON_CELL = 96                                                      # the icon: 2 x 2 samples, 194 x 194


def first_pngs(folder: Path, count: int, size: int = CELL) -> torch.Tensor:
    """The first `count` PNGs of `folder` (not previews) as [count, 3, size, size] in 0..1."""
    paths = sorted(p for p in folder.glob("*.png") if "preview" not in p.name)[:count]
    if len(paths) < count:
        raise SystemExit(f"{folder}: {len(paths)} PNGs, need {count}; run the main workflow first (see --help)")
    return _stack([Image.open(p) for p in paths], size)


def _stack(images: list[Image.Image], size: int) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.LANCZOS)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _to_pil(sheet: torch.Tensor) -> Image.Image:
    return Image.fromarray(sheet.permute(1, 2, 0).mul(255).round().byte().numpy())


def sheet(references: torch.Tensor, made: torch.Tensor, columns: int, gap: int) -> Image.Image:
    """One row of references over rows of generated images, a wider gap between the two parts."""
    top = tile([references[:columns]], pad=gap, columns=columns)
    rows = [made[i:i + columns] for i in range(0, made.shape[0], columns)]
    bottom = tile(rows, pad=gap, columns=columns)
    rule = torch.full((3, gap, top.shape[-1]), 0.8)  # a light grey line between references and results
    return _to_pil(torch.cat([top, rule, bottom[:, gap:]], dim=1))


def _reference_folder(folder_widget: str) -> Path:
    name = folder_widget.split("/", 1)[1] if folder_widget.startswith("examples/") else folder_widget
    return ROOT / "assets" / "references" / name


def run_for_thumbnail(api_path: Path, out: Path) -> tuple[Path, list[Image.Image]]:
    """Run one API workflow with an extra 16-sample branch; its reference folder and what it made."""
    prompt = json.loads(api_path.read_text())
    # Saving the adapted model is not part of the picture (and would leave a file in models/meta_gan).
    prompt = {k: e for k, e in prompt.items() if e["class_type"] != "MetaGANSaveAdapted"}
    refs = next(e for e in prompt.values() if e["class_type"] == "MetaGANLoadReferences")["inputs"]["folder"]
    adapt_id = next(k for k, e in prompt.items() if e["class_type"] == "MetaGANFewShotAdapt")
    prompt["900"] = {"class_type": "MetaGANSample", "inputs": {"meta_gan": [adapt_id, 0], "seed": 42, "count": 16,
                                                                "truncation": 1.0}}
    prompt["901"] = {"class_type": "SaveImage", "inputs": {"images": ["900", 0], "filename_prefix": "thumb/samples"}}
    job = out / "prompt.json"
    job.write_text(json.dumps(prompt))
    subprocess.run([sys.executable, str(ROOT / "run_workflow.py"), str(job), "--output", str(out)], check=True,
                   cwd=ROOT)
    animations = sorted(out.rglob("*.webp"))
    if animations:
        with Image.open(animations[0]) as anim:
            frames = []
            for i in range(anim.n_frames):
                anim.seek(i)
                frames.append(anim.convert("RGB"))
        count = THUMB_COLUMNS * THUMB_ROWS
        made = [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]
    else:
        made = [Image.open(p) for p in sorted((out / "thumb").glob("samples_*.png"))]
    return _reference_folder(refs), made


def make_thumbnails(only: list[str] | None = None) -> None:
    folder = ROOT / "example_workflows"
    paths = sorted((folder / "api").glob("*.json"))
    unknown = sorted(set(only or ()) - {p.stem for p in paths})
    if unknown:
        raise SystemExit(f"no workflow named {', '.join(unknown)} in {folder / 'api'}; "
                         f"choose from {', '.join(p.stem for p in paths)}")
    for api_path in paths:
        if only and api_path.stem not in only:
            continue
        with tempfile.TemporaryDirectory(prefix="metagan-thumb-") as tmp:
            references, made = run_for_thumbnail(api_path, Path(tmp))
            refs = first_pngs(references, THUMB_COLUMNS, THUMB_CELL)
            count = THUMB_COLUMNS * THUMB_ROWS
            picture = sheet(refs, _stack(made[:count], THUMB_CELL), THUMB_COLUMNS, THUMB_GAP)
            target = folder / f"{api_path.stem}.jpg"
            picture.save(target, quality=90, optimize=True)
            print(f"wrote {target.relative_to(ROOT)} ({picture.width} x {picture.height})")
            if api_path.stem == "metagan_fewshot_main":
                icon = _to_pil(tile([_stack(made[0:2], ICON_CELL), _stack(made[2:4], ICON_CELL)], pad=GAP))
                icon.save(ROOT / "assets" / "icon.png", optimize=True)
                print(f"wrote assets/icon.png ({icon.width} x {icon.height})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thumbnails", action="store_true", help="make the template thumbnails and the icon instead")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="with --thumbnails: only these workflows (file stems), e.g. metagan_fewshot_128")
    ap.add_argument("--references", type=Path)
    ap.add_argument("--samples", type=Path)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("assets/readme_preview.png"))
    args = ap.parse_args()
    if args.thumbnails:
        make_thumbnails(args.only)
        return
    if args.references is None or args.samples is None:
        ap.error("--references and --samples are needed (or --thumbnails)")
    if len(list(args.samples.glob("preview_*.png"))) > 1:  # one per run: older runs' samples would sort first
        raise SystemExit(f"{args.samples} holds the images of more than one run; run the workflow into an empty "
                         "--output folder")
    rows = [first_pngs(args.references, args.count), first_pngs(args.samples, args.count)]
    _to_pil(tile(rows, pad=GAP)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
