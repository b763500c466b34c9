"""Compare candidate checkpoints on the validation styles: meta against its own transfer baseline.

    python tools/validation_summary.py NAME=runs/val_x/results.json [NAME=...]

Each results.json comes from `python -m meta_core bench-quality --methods meta,transfer --heldout <validation
styles>`. Prints, per candidate, the comparisons meta wins, the mean log FD ratio meta/transfer (negative:
meta better) and the geometric-mean FD of each method.
"""
from __future__ import annotations

import json
import math
import sys


def summarise(path: str) -> dict:
    rows = json.load(open(path))["rows"]
    fd = {(r["style"], r["k"], r["budget"], r["method"]): r["fd"] for r in rows}
    cells = sorted({key[:3] for key in fd if key[3] == "meta" and key[:3] + ("transfer",) in fd})
    if not cells:
        raise SystemExit(f"{path}: no row has both a meta and a transfer FD; run bench-quality --methods meta,transfer")
    logs = [math.log(fd[c + ("meta",)] / fd[c + ("transfer",)]) for c in cells]

    def geomean(method):
        return math.exp(sum(math.log(fd[c + (method,)]) for c in cells) / len(cells))

    return {"cells": len(cells), "wins": sum(x < 0 for x in logs), "mean_log_ratio": sum(logs) / len(logs),
            "fd_meta": geomean("meta"), "fd_transfer": geomean("transfer")}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    print("| candidate | meta wins vs transfer | mean log(FD meta / FD transfer) | geo-mean FD meta | geo-mean FD transfer |")
    print("|---|---|---|---|---|")
    for arg in argv:
        name, _, path = arg.partition("=")
        s = summarise(path)
        print(f"| {name} | {s['wins']}/{s['cells']} | {s['mean_log_ratio']:+.3f} | {s['fd_meta']:.0f} | {s['fd_transfer']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
