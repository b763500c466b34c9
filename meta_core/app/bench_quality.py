"""Quality benchmark: few-shot adaptation to held-out styles, the meta-learned checkpoint against baselines.

For each held-out style, K references (fixed per style) and each step budget, every method adapts with
the same budget, then samples are compared with the style's unseen real images in the feature space
of the fixed evaluator network:

  (a) meta      the meta-learned checkpoint (ours), its own adaptation defaults;
  (b) transfer  the same architecture pretrained on the pooled training styles, fine-tuned with FreezeD
                and DiffAugment (the standard transfer-learning baseline), otherwise by ours' defaults
                (learning rates, batch, DiffAugment ops where ours uses plain DiffAugment);
  (c) scratch   the same architecture from random weights, trained on the K images with DiffAugment;
  (d) unlabeled meta-trained on the same images with style labels thrown away (k-means pseudo-tasks);
  (e) dcgan     the textbook recipe: a DCGAN-family model (`--dcgan`, pretrained pooled by `pretrain` with
                `--arch dcgan`) fine-tuned with FreezeD and DiffAugment, Adam 2e-4, batch 16.

Floors that give the numbers meaning: two halves of the style's real images, and the K references
themselves. Metrics: FD, KID, precision/recall, diversity, memorisation (see `metrics.py`). `gates` checks
the absolute targets (FD against the references' own FD, precision, recall, memorisation) and prints
pass or fail for each.

    python -m meta_core bench-quality --meta M.safetensors --transfer P.safetensors \
        --unlabeled U.safetensors --evaluator E.safetensors --heldout data/dicebear64/heldout --out bench/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from .. import checkpoint, metrics
from ..adaptation import adapt
from ..config import AugmentConfig, LossConfig, apply_overrides
from ..data import load_task_folder, to_float
from ..errors import ConfigError, MetaGANError
from ..fastpath import FastPath
from ..images import tile
from ..model import MetaGAN
from ..sampling import sample
from ..seeding import derived_generator
from .evaluator import load_evaluator

METHODS = ("meta", "transfer", "scratch", "unlabeled", "dcgan")
BASELINES = ("transfer", "scratch", "dcgan")  # what "meta beats ..." is counted against, where they ran
# the textbook fine-tuning, whole: nothing of the checkpoint's stored extras (anchors, an EMA, distance
# consistency, mirroring, R1), or a bundled checkpoint passed as --dcgan would lend the baseline its own default
DCGAN_RECIPE = dict(strategy="freeze_d", freeze_d_blocks=2, lr_g=2e-4, lr_d=2e-4, batch_size=16,
                    loss=LossConfig(r1_gamma=0.0), ema_half_life=0.0, cdc_weight=0.0, mirror=False, anchor_weight=0.0)
GATE_K = 10
REPEAT_SEED_STRIDE = 100_003  # seeds of repeat r: far from every other cell's


def method_setup(name: str, models: dict[str, MetaGAN], budget: int, seed: int):
    """(starting model, adaptation config) of a method at a step budget. Equal budgets for all."""
    ours = models["meta"]
    base_cfg = dataclasses.replace(ours.adapt_defaults, steps=budget)
    if name == "meta":
        return ours, base_cfg
    if name == "unlabeled":
        return models["unlabeled"], dataclasses.replace(models["unlabeled"].adapt_defaults, steps=budget)
    if name == "transfer":  # ours' recipe with FreezeD; ours' DiffAugment ops where ours uses them, else the full set
        augment = base_cfg.augment if base_cfg.augment.ops and not base_cfg.augment.adaptive else AugmentConfig()
        return models["transfer"], dataclasses.replace(base_cfg, strategy="freeze_d", augment=augment)
    if name == "dcgan":
        return models["dcgan"], dataclasses.replace(models["dcgan"].adapt_defaults, steps=budget,
                                                    augment=AugmentConfig(), **DCGAN_RECIPE)
    if name == "scratch":
        return (MetaGAN.create(ours.config, seed=seed).to(ours.device),
                dataclasses.replace(base_cfg, strategy="full", augment=AugmentConfig()))
    raise ConfigError(f"unknown method {name!r}")


def score(fake_f, real_f, ref_f) -> dict:
    fd = metrics.frechet_distance(fake_f, real_f)
    kid, _ = metrics.kernel_inception_distance(fake_f, real_f, subsets=10, subset_size=min(100, len(fake_f)))
    precision, recall = metrics.precision_recall(real_f, fake_f)
    return {"fd": fd, "kid": kid, "precision": precision, "recall": recall, "diversity": metrics.diversity(fake_f),
            **metrics.memorisation(fake_f, ref_f, real_f)}


def run(models: dict[str, MetaGAN], evaluator, heldout_dir: str, styles: list[str] | None, shots: list[int],
        budgets: list[int], samples: int, seed: int = 0, log=print, methods: list[str] | None = None,
        repeats: int = 1, fast: FastPath | None = None) -> dict:
    """`repeats` > 1 adapts and samples each cell that many times with other seeds (the same references) and reports
    the mean of each metric, with the single-run FDs in `fd_runs`: less noise when comparing close candidates.
    The first run uses the seed a single-run benchmark uses, so its FD is that run's FD."""
    if repeats < 1:
        raise ConfigError(f"repeats {repeats} must be at least 1")
    ours = models["meta"]
    tasks = load_task_folder(heldout_dir, ours.resolution)
    wanted = styles or tasks.names
    missing = sorted(set(wanted) - set(tasks.names))
    if missing:
        raise ConfigError(f"styles {missing} are not in {heldout_dir}: choose from {', '.join(tasks.names)}")
    unknown = sorted(set(methods or ()) - set(METHODS))
    if unknown or (methods is not None and "meta" not in methods):
        raise ConfigError(f"methods must include meta and come from {', '.join(METHODS)}; got {', '.join(methods)}")
    methods = [m for m in METHODS if (m in models or m == "scratch") and (methods is None or m in methods)]
    rows, floors, figure = [], [], {}
    for style in wanted:
        images = tasks.images[tasks.names.index(style)]
        order = torch.randperm(images.shape[0], generator=derived_generator(seed, len(style), *style.encode()))
        pool, real = images[order[: max(shots)]], images[order[max(shots):]]
        if real.shape[0] < 10:
            raise ConfigError(f"style {style} has {images.shape[0]} images; it needs at least {max(shots) + 10}")
        real01 = to_float(real) * 0.5 + 0.5
        real_f = evaluator.features(real01)
        half = real_f.shape[0] // 2
        floors.append({"style": style, "real_halves_fd": metrics.frechet_distance(real_f[:half], real_f[half:])})
        for k in shots:
            refs01 = to_float(pool[:k]) * 0.5 + 0.5
            ref_f = evaluator.features(refs01)
            if k >= 2:
                floors[-1][f"references_fd_k{k}"] = metrics.frechet_distance(ref_f, real_f)
            for budget in budgets:
                for name in methods:
                    start = time.perf_counter()
                    runs = []
                    for r in range(repeats):
                        run_seed = seed * 1000 + k + REPEAT_SEED_STRIDE * r
                        model, cfg = method_setup(name, models, budget, run_seed)
                        adapted = adapt(model, refs01, cfg, seed=run_seed, fast=fast).model
                        fakes = sample(adapted, seed=run_seed, count=samples)
                        runs.append(score(evaluator.features(fakes), real_f, ref_f))
                        if r == 0:
                            fake01 = fakes  # the figure shows the first run
                    row = {"style": style, "k": k, "budget": budget, "method": name,
                           **{key: sum(run[key] for run in runs) / repeats for key in runs[0]},
                           "seconds": round((time.perf_counter() - start) / repeats, 2)}
                    if repeats > 1:
                        row["fd_runs"] = [run["fd"] for run in runs]
                    rows.append(row)
                    log(f"{style:18s} K={k:<3d} steps={budget:<4d} {name:9s} FD {row['fd']:8.3f}  "
                        f"KID {row['kid']:.4f}  "
                        f"P {row['precision']:.2f} R {row['recall']:.2f}  copies {row['copies']:.2f}  "
                        f"{row['seconds']:.1f}s")
                    if budget == budgets[-1] and k == shots[len(shots) // 2]:
                        figure.setdefault(style, {"refs": refs01})[name] = fake01[:8]
    return {"rows": rows, "floors": floors, "figure": figure, "methods": methods, "shots": shots, "budgets": budgets}


def summarise(result: dict) -> str:
    rows, methods = result["rows"], result["methods"]
    lines = []
    for budget in result["budgets"]:
        lines += [f"\n### FD at {budget} adaptation steps (lower is better; KID in brackets)", "",
                  "| style | K | " + " | ".join(methods) + " | real halves |",
                  "|---|---|" + "---|" * (len(methods) + 1)]
        floors = {f["style"]: f for f in result["floors"]}
        for style in dict.fromkeys(r["style"] for r in rows):
            for k in result["shots"]:
                cells = {r["method"]: r for r in rows if r["style"] == style and r["k"] == k and r["budget"] == budget}
                best = min(cells.values(), key=lambda r: r["fd"])["method"]
                text = [f"**{cells[m]['fd']:.2f}** ({cells[m]['kid']:.3f})" if m == best else
                        f"{cells[m]['fd']:.2f} ({cells[m]['kid']:.3f})" for m in methods]
                lines.append(f"| {style} | {k} | " + " | ".join(text) + f" | {floors[style]['real_halves_fd']:.2f} |")
        baselines = [other for other in BASELINES if other in methods]
        for k in result["shots"] if baselines else ():  # with no baseline run there is nothing to beat
            group = [r for r in rows if r["budget"] == budget and r["k"] == k]
            styles = sorted({r["style"] for r in group})
            wins = sum(1 for s in styles if all(
                next(r["fd"] for r in group if r["style"] == s and r["method"] == "meta") <
                next(r["fd"] for r in group if r["style"] == s and r["method"] == other) for other in baselines))
            lines.append(f"\nK={k}, {budget} steps: meta beats {' and '.join(baselines)} on FD for "
                         f"{wins}/{len(styles)} styles")
    lines += gates(result)
    return "\n".join(lines)


def gates(result: dict, method: str = "meta", k: int = GATE_K) -> list[str]:
    """The absolute targets at K = `k` and the last budget, each PASS or FAIL with its numbers: FD at most 2x the
    references' own FD on every style and below it on at least 4 (or half, with fewer styles); mean precision
    >= 0.3, mean recall >= 0.2; median memorisation ratio > 1 on every style."""
    budget = result["budgets"][-1]
    rows = [r for r in result["rows"] if r["method"] == method and r["k"] == k and r["budget"] == budget]
    floors = {f["style"]: f for f in result["floors"]}
    rows = [r for r in rows if f"references_fd_k{k}" in floors[r["style"]]]
    if not rows:
        return [f"\ngates: no {method} rows at K={k} (run with --shots including {k})"]
    ratios = {r["style"]: r["fd"] / floors[r["style"]][f"references_fd_k{k}"] for r in rows}
    below = sum(x < 1 for x in ratios.values())
    need_below = min(4, (len(ratios) + 1) // 2)
    precision = sum(r["precision"] for r in rows) / len(rows)
    recall = sum(r["recall"] for r in rows) / len(rows)
    copies = {r["style"]: r["median_ratio"] for r in rows}

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    worst = max(ratios, key=ratios.get)
    return [f"\n### Absolute gates ({method}, K={k}, {budget} steps, {len(rows)} styles)", "",
            f"- {verdict(max(ratios.values()) <= 2)} FD <= 2x the references' own FD on every style "
            f"(worst {worst}: {ratios[worst]:.2f}x)",
            f"- {verdict(below >= need_below)} FD below the references' own FD on at least {need_below} styles "
            f"({below})",
            f"- {verdict(precision >= 0.3)} mean precision >= 0.3 ({precision:.3f})",
            f"- {verdict(recall >= 0.2)} mean recall >= 0.2 ({recall:.3f})",
            f"- {verdict(min(copies.values()) > 1)} memorisation ratio > 1 on every style "
            f"(lowest {min(copies, key=copies.get)}: {min(copies.values()):.2f})"]


def unadapted_samples(model: MetaGAN, seed: int, count: int) -> torch.Tensor:
    """`count` samples of `seed`; a model that keeps its training styles (`G.styles`) draws consecutive shares of the
    stream at each style's vector in turn (as the pooled images hold every style)."""
    styles = getattr(model.G, "styles", None)
    if styles is None:
        return sample(model, seed=seed, count=count)
    g, d = model.g_params(), model.d_params()
    shares = [part for part in torch.arange(count).tensor_split(styles.shape[0]) if part.numel()]
    return torch.cat([sample(model.with_params({**g, "style": styles[i]}, d), seed=seed, count=part.numel(),
                             start=int(part[0])) for i, part in enumerate(shares)])


def stratified_halves(images: list[torch.Tensor], per_style: int, generator: torch.Generator):
    """Two disjoint random halves of the pooled `images` (one tensor per style), each holding `per_style` images of
    every style: random halves of a pool of many styles differ in their styles' shares, which moved the floor below
    between 3.8 and 11.5 with the seed alone."""
    halves = ([], [])
    for style in images:
        order = torch.randperm(style.shape[0], generator=generator)
        halves[0].append(style[order[:per_style]])
        halves[1].append(style[order[per_style: 2 * per_style]])
    return torch.cat(halves[0]), torch.cat(halves[1])


def prior_fit(model: MetaGAN, evaluator, tasks_dir: str, exclude: tuple[str, ...] = (), samples: int = 1000,
              seed: int = 0) -> dict:
    """The unadapted model against the pooled images of its training styles: FD of about `samples` samples to one
    random half of the pooled images and, as the floor, FD between that half and another; both halves hold every
    style in equal shares, as the pretraining data does (`stratified_halves`). A class-conditional model that keeps
    its training styles draws an equal share at each style's own vector."""
    tasks = load_task_folder(tasks_dir, model.resolution, exclude=exclude)
    smallest = min(style.shape[0] for style in tasks.images)
    per_style = min(samples // len(tasks.images), smallest // 2)
    if per_style * len(tasks.images) < 10:
        raise ConfigError(f"{tasks_dir} has too few training images for the prior fit: it needs at least 20, with at "
                          f"least 2 of every style (its smallest style has {smallest})")
    half_a, half_b = stratified_halves(tasks.images, per_style, derived_generator(seed, 0x9F17))
    n = half_a.shape[0]
    real_a, real_b = (evaluator.features(to_float(half) * 0.5 + 0.5) for half in (half_a, half_b))
    fd = metrics.frechet_distance(evaluator.features(unadapted_samples(model, seed, n)), real_a)
    floor = metrics.frechet_distance(real_b, real_a)
    return {"styles": tasks.names, "images": n, "fd": fd, "real_halves_fd": floor, "ratio": fd / max(floor, 1e-12)}


def prior_gate(fit: dict) -> str:
    return (f"- {'PASS' if fit['ratio'] <= 10 else 'FAIL'} the unadapted model on its {len(fit['styles'])} training "
            f"styles within 10x the real-halves FD ({fit['fd']:.2f} against {fit['real_halves_fd']:.2f}: "
            f"{fit['ratio']:.1f}x, {fit['images']} images each)")


def write_figure(result: dict, path: Path) -> None:
    """Per style: the references, then 8 samples per method (rows), each row labelled on the left."""
    tiles, labels = [], []
    for style, parts in result["figure"].items():
        tiles.append(parts["refs"])
        labels.append(f"{style}: refs")
        for m in result["methods"]:
            if m in parts:
                tiles.append(parts[m])
                labels.append(m)
    res = tiles[0].shape[-1]
    canvas = tile(tiles, columns=8)
    image = Image.fromarray((canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8"))
    label_rows(image, labels, res + 2).save(path)


def label_rows(image, labels: list[str], row_height: int, margin: int = 120):
    """`image` with a white margin on the left holding one label per row of tiles."""
    out = Image.new("RGB", (image.width + margin, image.height), "white")
    out.paste(image, (margin, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        draw.text((4, 2 + i * row_height + row_height // 2 - 6), text, fill=(0, 0, 0))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_core bench-quality", description=__doc__.splitlines()[0])
    p.add_argument("--meta", required=True, help="the meta-learned checkpoint (ours)")
    p.add_argument("--transfer", help="pooled-pretrained checkpoint (baseline b)")
    p.add_argument("--unlabeled", help="checkpoint meta-trained on k-means pseudo-tasks (baseline d)")
    p.add_argument("--dcgan", help="DCGAN-family pooled-pretrained checkpoint (baseline e, the textbook recipe)")
    p.add_argument("--evaluator", required=True, help="evaluator network (python -m meta_core.evaluator)")
    p.add_argument("--heldout", required=True, help="folder with one sub-folder per held-out style")
    p.add_argument("--styles", help="comma-separated styles (default: all in --heldout)")
    p.add_argument("--shots", default="1,5,10")
    p.add_argument("--budgets", default="50,0", help="adaptation steps; 0 means the checkpoint's default")
    p.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)} (default: every one given)")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1,
                   help="adapt and sample each cell this many times (same references, other seeds) and report means")
    p.add_argument("--adapt", default="", help="change ours' stored adaptation defaults for this run, e.g. "
                   "lr_g=5e-5,lr_d=5e-5,ema_half_life=20 (to compare candidates before storing one)")
    p.add_argument("--prior-fit", metavar="TRAIN_DIR", help="also score ours unadapted against the pooled images of "
                   "its training styles in this folder (with --exclude), the fourth absolute gate")
    p.add_argument("--exclude", default="", help="task names in --prior-fit's folder that ours was not trained on")
    p.add_argument("--reference-path", action="store_true", help="adapt on the reference path (default: the fast "
                   "path, which the nodes and the adapt command use)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="folder for results.json, results.md and figure.png")
    args = p.parse_args(argv)
    try:
        ours = checkpoint.load(args.meta, args.device)
        if args.adapt:
            ours.adapt_defaults = apply_overrides(ours.adapt_defaults, args.adapt)
        models = {"meta": ours}
        if args.transfer:
            models["transfer"] = checkpoint.load(args.transfer, args.device)
        if args.unlabeled:
            models["unlabeled"] = checkpoint.load(args.unlabeled, args.device)
        if args.dcgan:
            models["dcgan"] = checkpoint.load(args.dcgan, args.device)
        budgets = [int(b) or models["meta"].adapt_defaults.steps for b in args.budgets.split(",")]
        evaluator = load_evaluator(args.evaluator, args.device)
        fit = None
        if args.prior_fit:
            fit = prior_fit(models["meta"], evaluator, args.prior_fit, tuple(x for x in args.exclude.split(",") if x),
                            seed=args.seed)
        result = run(models, evaluator, args.heldout,
                     args.styles.split(",") if args.styles else None, [int(k) for k in args.shots.split(",")],
                     budgets, args.samples, args.seed, methods=args.methods.split(",") if args.methods else None,
                     repeats=args.repeats, fast=FastPath.reference() if args.reference_path else FastPath())
    except MetaGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if fit is not None:
        result["prior_fit"] = fit
    table = summarise(result) + ("\n" + prior_gate(fit) if fit is not None else "")
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({k: v for k, v in result.items() if k != "figure"}, indent=1))
    write_figure(result, out / "figure.png")
    print(table)
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'}, {out / 'figure.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
