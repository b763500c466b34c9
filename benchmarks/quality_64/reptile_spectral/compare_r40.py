"""Rule 40, item 5: Reptile's held-out cells against the bundled prior's cells of the same seeds and references.
Usage: compare_r40.py REPTILE_RESULTS.json (the bundled cells are read from ../bundled_tb64/)."""
import json
import sys
from statistics import geometric_mean
from pathlib import Path

here = Path(__file__).resolve().parent
bundled = {}
for f in (here.parent / "bundled_tb64/results.json", here.parent / "bundled_tb64/k1_k5/results.json"):
    for r in json.loads(f.read_text())["rows"]:
        if r["method"] == "meta":
            bundled[(r["style"], r["k"])] = r
reptile = {(r["style"], r["k"]): r for r in json.loads(Path(sys.argv[1]).read_text())["rows"] if r["method"] == "meta"}
print("| K | style | bundled FD | Reptile FD | bundled P / R | Reptile P / R | Reptile copies |")
print("|---|---|---|---|---|---|---|")
for k in sorted({k for _, k in reptile}):
    styles = sorted(s for s, kk in reptile if kk == k)
    wins = 0
    for s in styles:
        b, r = bundled[(s, k)], reptile[(s, k)]
        wins += r["fd"] < b["fd"]
        print(f"| {k} | {s} | {b['fd']:.1f} | {r['fd']:.1f} | {b['precision']:.2f} / {b['recall']:.2f} | "
              f"{r['precision']:.2f} / {r['recall']:.2f} | {r['copies']:.2f} |")
    gb, gr = (geometric_mean(cells[(s, k)]["fd"] for s in styles) for cells in (bundled, reptile))
    print(f"| {k} | geo-mean; Reptile lower on {wins} of {len(styles)} | {gb:.1f} | {gr:.1f} | | | |")
