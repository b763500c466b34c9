"""Compare candidate checkpoints on the validation styles: meta against its own transfer baseline.

    python tools/validation_summary.py NAME=runs/val_x/results.json [NAME=...]

Each results.json comes from `python -m meta_core bench-quality --methods meta,transfer --heldout <validation
styles>`. Prints, per candidate, the comparisons meta wins, the mean log FD ratio meta/transfer (negative:
meta better) and the geometric-mean FD of each method.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_to_head import compare, fds  # noqa: E402


def summarise(path: str) -> dict:
    meta, transfer = fds(path, "meta"), fds(path, "transfer")
    if not meta.keys() & transfer.keys():
        raise SystemExit(f"{path}: no row has both a meta and a transfer FD; run bench-quality --methods meta,transfer")
    s = compare(meta, transfer)
    return {"cells": s["cells"], "wins": s["wins"], "mean_log_ratio": s["mean_log_ratio"], "fd_meta": s["geomean_a"],
            "fd_transfer": s["geomean_b"]}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    print("| candidate | meta wins vs transfer | mean log(FD meta / FD transfer) | geo-mean FD meta "
          "| geo-mean FD transfer |")
    print("|---|---|---|---|---|")
    for arg in argv:
        name, _, path = arg.partition("=")
        s = summarise(path)
        print(f"| {name} | {s['wins']}/{s['cells']} | {s['mean_log_ratio']:+.3f} | {s['fd_meta']:.0f} "
              f"| {s['fd_transfer']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
