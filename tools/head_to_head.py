"""Compare two bench-quality runs cell by cell: one method of run A against one method of run B.

    python tools/head_to_head.py A.json B.json [--method meta] [--method-b meta]

Both results.json files come from `python -m meta_core bench-quality`. A cell is (style, K, budget). Prints
the cells where A has the lower FD, the mean log FD ratio A/B (negative: A better), each side's geometric-mean
FD over the shared cells, and the per-style wins. Used to judge a candidate checkpoint against the bundled one.
"""
from __future__ import annotations

import argparse
import collections
import json
import math


def fds(path: str, method: str) -> dict[tuple, float]:
    rows = json.load(open(path))["rows"]
    return {(r["style"], r["k"], r["budget"]): r["fd"] for r in rows if r["method"] == method}


def compare(a: dict[tuple, float], b: dict[tuple, float]) -> dict:
    cells = sorted(a.keys() & b.keys())
    if not cells:
        raise SystemExit("the two runs share no (style, K, budget) cell for these methods")
    logs = {c: math.log(a[c] / b[c]) for c in cells}
    per_style = collections.Counter(c[0] for c in cells if logs[c] < 0)

    def geomean(fd):
        return math.exp(sum(math.log(fd[c]) for c in cells) / len(cells))

    return {"cells": len(cells), "wins": sum(x < 0 for x in logs.values()),
            "mean_log_ratio": sum(logs.values()) / len(cells), "geomean_a": geomean(a), "geomean_b": geomean(b),
            "per_style": {s: (per_style[s], sum(c[0] == s for c in cells)) for s in sorted({c[0] for c in cells})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--method", default="meta", help="method of run A (default meta)")
    parser.add_argument("--method-b", default=None, help="method of run B (default: the same as --method)")
    args = parser.parse_args()
    s = compare(fds(args.a, args.method), fds(args.b, args.method_b or args.method))
    print(f"A has the lower FD in {s['wins']} of {s['cells']} cells; mean log(FD A / FD B) {s['mean_log_ratio']:+.3f}; "
          f"geo-mean FD A {s['geomean_a']:.0f}, B {s['geomean_b']:.0f}")
    print("| style | A wins |")
    print("|---|---|")
    for style, (wins, n) in s["per_style"].items():
        print(f"| {style} | {wins}/{n} |")


if __name__ == "__main__":
    main()
