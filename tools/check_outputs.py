"""Check that a headless run wrote the expected PNGs and that none is blank (CI's main-job check).

    python tools/check_outputs.py OUTPUT_DIR --pattern 'metagan/samples_*.png' --count 16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--pattern", default="**/*.png")
    p.add_argument("--count", type=int, default=1, help="at least this many files must match")
    p.add_argument("--min-std", type=float, default=2.0, help="pixel standard deviation (0..255) below which an "
                                                              "image counts as blank")
    args = p.parse_args(argv)
    files = sorted(Path(args.folder).glob(args.pattern))
    problems = [] if len(files) >= args.count else [f"expected at least {args.count} files matching {args.pattern} "
                                                    f"in {args.folder}, found {len(files)}"]
    for f in files:
        std = float(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32).std())
        if std < args.min_std:
            problems.append(f"{f}: blank (pixel std {std:.2f})")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print(f"ok: {len(files)} non-blank images matching {args.pattern} in {args.folder}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
