"""`python -m meta_core`: train, adapt, sample, info.

User errors (bad arguments, bad files) print one line and exit non-zero, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed

from .. import checkpoint
from ..adaptation import adapt
from ..config import (ALGORITHMS, RESOLUTIONS, STRATEGIES, AdaptConfig, MetaConfig, ModelConfig, apply_overrides,
                      to_json)
from ..data import load_image_folder, load_task_folder, load_unlabeled_folder, to_float
from ..errors import ConfigError, MetaGANError
from ..fastpath import FastPath
from ..meta import MetaTrainer, init_distributed
from ..model import MetaGAN
from ..sampling import sample
from . import bench_quality, bench_speed, dicebear, evaluator, pretrain
from .common import REPO, hardware, open_run_dir, progress_bar, resolve_device, save_grid, save_png

EXIT_USER_ERROR = 2


# --- commands ------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    device = resolve_device(args.device)
    dist = init_distributed(device)
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    main_rank = dist.rank == 0
    if args.resume:
        model = checkpoint.load(args.resume, device)
        if model.meta_config is None:
            raise ConfigError(f"{args.resume} was not meta-trained, so there is no run to resume: start a new run "
                              "without --resume")
        cfg = model.meta_config
        changed = [f for f, v in (("--inner-from-init", args.inner_from_init), ("--inner-steps", args.inner_steps),
                                  ("--inner-lr", args.inner_lr), ("--batch-size", args.batch_size),
                                  ("--strategy", args.strategy), ("--inner-set", args.inner_set),
                                  ("--meta-set", args.meta_set), ("--init", args.init)) if v]
        if changed:
            raise ConfigError(f"--resume continues the stored run with its own settings; drop {', '.join(changed)} "
                              "(only --steps may change)")
        if args.steps is not None:
            cfg = dataclasses.replace(cfg, steps=args.steps)
    else:
        start = checkpoint.load(args.init, device) if args.init else None
        if args.inner_from_init and start is None:
            raise ConfigError("--inner-from-init takes the inner loop from the --init checkpoint's adaptation "
                              "default: give --init too")
        inner = start.adapt_defaults if args.inner_from_init else AdaptConfig(steps=10, strategy="full")
        given = {"steps": args.inner_steps, "lr_g": args.inner_lr, "lr_d": args.inner_lr,
                 "batch_size": args.batch_size, "strategy": args.strategy}
        inner = apply_overrides(dataclasses.replace(inner, **{k: v for k, v in given.items() if v is not None}),
                                args.inner_set)
        cfg = apply_overrides(MetaConfig(algorithm=args.algorithm, steps=args.steps or MetaConfig.steps,
                                         meta_batch=args.meta_batch, support_size=args.support, seed=args.seed,
                                         inner=inner), args.meta_set)
        if start is not None:  # e.g. a pooled-pretrained model: meta-learning builds on it
            model = start.with_params(start.g_params(), start.d_params(), meta_config=None, meta_step=0,
                                      provenance={"init": {"file": str(args.init), **start.provenance}})
        else:
            model_cfg = ModelConfig.for_resolution(args.resolution, channel_base=args.channel_base,
                                                   channel_max=args.channel_max)
            model = MetaGAN.create(model_cfg, seed=args.seed).to(device)
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    if args.tasks:
        tasks = load_task_folder(args.tasks, model.resolution, exclude=exclude, limit_per_task=args.limit_per_task)
    else:
        tasks = load_unlabeled_folder(args.unlabeled, model.resolution, args.clusters, seed=cfg.seed, exclude=exclude)
    if args.minutes and dist.active:
        raise ConfigError("--minutes fits one process's schedule; with torchrun give --steps instead")
    trainer = MetaTrainer(model, tasks, cfg, dist, fast=FastPath() if args.fast else None)
    previous_wall = float(model.provenance.get("wall_seconds", 0.0))
    started = time.perf_counter()
    provenance = {
        "command": "python -m meta_core " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py")
        else " ".join(sys.argv),
        "data": {**tasks.describe(), "excluded": list(exclude), "task_names": tasks.names},
        "hardware": {**hardware(device), "world_size": dist.world},
        "algorithm": cfg.algorithm,
        **({"fast_path": trainer.fast.describe()} if trainer.fast is not None else {}),
        **({"init": model.provenance.get("init")} if "init" in model.provenance else {}),
    }

    run_dir, log = open_run_dir(args.run_dir, args.out) if main_rank else (None, None)

    def write(final: bool = False) -> None:
        if not main_rank:
            return
        wall = previous_wall + time.perf_counter() - started
        out = trainer.current_model(provenance={**provenance, "steps": trainer.step,
                                                "wall_seconds": round(wall, 1)})
        checkpoint.save(out, args.out, dtype=torch.float16 if args.half else torch.float32)
        save_grid(out, run_dir / f"fakes_step{trainer.step:06d}.png")
        if not final:
            bar.write(f"checkpoint: step {trainer.step} -> {args.out}, {run_dir}/fakes_step*.png", file=sys.stderr)

    bar = progress_bar(cfg.steps, "meta-train", start=trainer.step, log_every=args.log_every)
    last_save = time.perf_counter()
    if main_rank:
        print(f"meta-training {cfg.algorithm} on {len(tasks)} tasks ({tasks.num_images} images) at "
              f"{model.resolution}px, {dist.world} process(es) on {device}; steps {trainer.step}->{cfg.steps}",
              file=sys.stderr)

    first_step = trainer.step

    def on_step(stats) -> None:
        nonlocal last_save
        if args.minutes:  # fit the schedule into the budget from the rate so far (re-fitted every step)
            elapsed = time.perf_counter() - started
            done = stats.step - first_step
            if done >= 5 or elapsed > args.minutes * 60:
                trainer.fit_schedule(min(cfg.steps, stats.step + int((args.minutes * 60 - elapsed) * done / elapsed)))
                bar.total = trainer.cfg.steps
        if main_rank:
            log.write(json.dumps(dataclasses.asdict(stats)) + "\n")
            log.flush()
            bar.set_postfix(d=f"{stats.d_loss:.3f}", g=f"{stats.g_loss:.3f}", eps=f"{stats.eps:.3f}", refresh=False)
            bar.update(stats.step - bar.n)
        due = (args.checkpoint_every and stats.step % args.checkpoint_every == 0) or \
              (time.perf_counter() - last_save) > args.checkpoint_minutes * 60
        if due and stats.step < trainer.cfg.steps:
            write()
            last_save = time.perf_counter()

    try:
        trainer.run(on_step=on_step)
    finally:
        if main_rank:
            bar.close()
            log.close()
    write(final=True)
    if main_rank:
        print(f"wrote {args.out} (step {trainer.step})")
    if dist.active:
        torch.distributed.destroy_process_group()
    return 0


def cmd_adapt(args) -> int:
    device = resolve_device(args.device)
    base = checkpoint.load(args.checkpoint, device)
    refs = to_float(load_image_folder(args.references, base.resolution)) * 0.5 + 0.5
    changes = {k: v for k, v in {"steps": args.steps, "lr_g": args.lr, "lr_d": args.lr, "strategy": args.strategy,
                                 "batch_size": args.batch_size}.items() if v is not None}
    cfg = apply_overrides(dataclasses.replace(base.adapt_defaults, **changes), args.set)
    bar = progress_bar(cfg.steps, "adapt", log_every=10.0)

    def on_step(p) -> None:
        bar.set_postfix(d=f"{p.d_loss:.3f}", g=f"{p.g_loss:.3f}", refresh=False)
        bar.update(p.step - bar.n)

    result = adapt(base, refs, cfg, seed=args.seed, on_step=on_step,
                   fast=FastPath.reference() if args.reference_path else FastPath())
    bar.close()
    if args.delta:
        checkpoint.save_delta(result.model, args.out)
    else:
        checkpoint.save(result.model, args.out)
    print(f"adapted to {refs.shape[0]} references in {result.stats.seconds:.1f}s "
          f"({result.stats.rollbacks} rollbacks) -> {args.out}")
    return 0


def cmd_sample(args) -> int:
    device = resolve_device(args.device)
    model = checkpoint.load(args.checkpoint, device)
    if args.delta:
        model = checkpoint.load_delta(model, args.delta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = sample(model, args.seed, args.count, args.truncation)
    for i, img in enumerate(images):
        save_png(img, out / f"seed{args.seed}_{i:05d}.png")
    print(f"wrote {len(images)} images to {out}")
    return 0


def cmd_bench_speed(args) -> int:
    bench_speed.run(args, log=lambda line: print(line, file=sys.stderr, flush=True),
                    out=lambda line: print(line, flush=True))
    return 0


def cmd_set_defaults(args) -> int:
    model = checkpoint.load(args.file)
    cfg = apply_overrides(model.adapt_defaults, args.adapt)
    checkpoint.save(model.with_params(model.g_params(), model.d_params(), adapt_defaults=cfg), args.file,
                    dtype=checkpoint.stored_dtype(args.file))
    print(f"{args.file}: adaptation defaults {json.loads(to_json(cfg))}")
    return 0


def cmd_info(args) -> int:
    metadata = checkpoint.read_metadata(args.file)
    decoded = {}
    for key, value in sorted(metadata.items()):
        try:
            decoded[key] = json.loads(value) if value[:1] in "{[" else value
        except (ValueError, RecursionError):  # JSONDecodeError, huge numbers, absurd nesting
            decoded[key] = value
    if metadata["model_kind"] == checkpoint.MODEL_KIND:
        decoded["parameters"] = checkpoint.load(args.file).parameter_summary()
    decoded["file_bytes"] = os.path.getsize(args.file)
    print(json.dumps(decoded, indent=2, sort_keys=True))
    return 0


# --- parser --------------------------------------------------------------------------------------

def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{value} must be a positive, finite number")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


def seed_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2 ** 64:
        raise argparse.ArgumentTypeError(f"{value} must be in 0..2**64-1")
    return value


FAST_HELP = ("use the fast path (meta_core.fast.FastPath: channels_last and foreach Adam; on CUDA also CUDA graphs "
             "and, for train, vmap across a meta-batch's tasks): the same gradients, faster steps")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m meta_core", description="Meta-learned GAN: train, adapt, sample.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, seed_default=0):
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
        sp.add_argument("--seed", type=seed_int, default=seed_default, help="seed of every random draw")

    t = sub.add_parser("train", help="meta-train a model over tasks")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--tasks", help="folder with one sub-folder of images per task")
    src.add_argument("--unlabeled", help="flat folder of images, split into pseudo-tasks by k-means")
    t.add_argument("--clusters", type=positive_int, default=16, help="pseudo-tasks for --unlabeled (default 16)")
    t.add_argument("--out", required=True, help="checkpoint to write (.safetensors), also written periodically")
    t.add_argument("--resume", help="continue the run stored in this checkpoint")
    t.add_argument("--init", help="start from this checkpoint's weights and architecture (e.g. from `pretrain`)")
    t.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=64)
    t.add_argument("--steps", type=positive_int, help=f"outer steps in total (default {MetaConfig.steps})")
    t.add_argument("--algorithm", choices=ALGORITHMS, default="reptile")
    t.add_argument("--meta-batch", type=positive_int, default=MetaConfig.meta_batch, help="tasks per outer step")
    t.add_argument("--support", type=positive_int, default=MetaConfig.support_size, help="images per task (K)")
    t.add_argument("--inner-from-init", action="store_true", help="the inner loop is the --init checkpoint's "
                   "adaptation default (the budget a user gets); the options below change it")
    t.add_argument("--inner-steps", type=positive_int, help="inner-loop steps per task (default 10)")
    t.add_argument("--inner-lr", type=positive_float, help=f"inner Adam learning rate (default {AdaptConfig.lr_g})")
    t.add_argument("--batch-size", type=positive_int, help=f"inner batch (default {AdaptConfig.batch_size})")
    t.add_argument("--strategy", choices=STRATEGIES, help="inner-loop strategy (default full)")
    t.add_argument("--inner-set", default="", help="other inner-loop AdaptConfig fields, e.g. "
                   "freeze_d_blocks=2,loss.r1_gamma=0.1,loss.r1_interval=16")
    t.add_argument("--meta-set", default="", help="other MetaConfig fields, e.g. eps_start=0.2,eps_end=0.02 "
                   "(Reptile's outer step size) or query_size=16")
    t.add_argument("--channel-base", type=positive_int, default=ModelConfig.for_resolution(64).generator.channel_base,
                   help="channels at resolution r: min(channel_base // r, channel_max)")
    t.add_argument("--channel-max", type=positive_int, default=ModelConfig.for_resolution(64).generator.channel_max)
    t.add_argument("--exclude", help="comma-separated task names to leave out (held-out styles)")
    t.add_argument("--limit-per-task", type=positive_int, help="read at most this many images per task")
    t.add_argument("--minutes", type=positive_float, help="time budget: after a few steps, shorten --steps to what "
                   "fits and anneal the outer step size to end there")
    t.add_argument("--fast", action="store_true", help=FAST_HELP)
    t.add_argument("--checkpoint-every", type=int, default=100, help="write --out every N steps (0: off)")
    t.add_argument("--checkpoint-minutes", type=float, default=5.0, help="and at least every M minutes")
    t.add_argument("--run-dir", help="folder for fakes_step*.png (theta's fixed-seed samples at every checkpoint) and "
                   "log.jsonl (one line per outer step; default: --out without its suffix)")
    t.add_argument("--half", action="store_true", help="write --out in float16 (half the file; loads as float32)")
    t.add_argument("--log-every", type=float, default=30.0, help="seconds between progress lines off a terminal")
    common(t)
    t.set_defaults(func=cmd_train)

    defaults = ModelConfig.for_resolution(64).generator
    pretrain.add_parser(sub, common, positive_int, positive_float, RESOLUTIONS, defaults.channel_base,
                        defaults.channel_max)

    a = sub.add_parser("adapt", help="adapt a checkpoint to a folder of reference images")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--references", required=True, help="folder of 1..64 reference images")
    a.add_argument("--out", required=True, help="adapted checkpoint to write (.safetensors)")
    a.add_argument("--steps", type=positive_int, help="default: the checkpoint's")
    a.add_argument("--lr", type=positive_float, help="G and D learning rate; default: the checkpoint's")
    a.add_argument("--strategy", choices=STRATEGIES, help="default: the checkpoint's")
    a.add_argument("--batch-size", type=positive_int)
    a.add_argument("--set", default="", help="other AdaptConfig fields, e.g. ema_half_life=20,freeze_d_blocks=2")
    a.add_argument("--reference-path", action="store_true", help="adapt on the reference path (slower; the fast "
                   "path, the default, is tested against it)")
    a.add_argument("--delta", action="store_true", help="with --strategy modulation: write a small delta file")
    common(a)
    a.set_defaults(func=cmd_adapt)

    s = sub.add_parser("sample", help="write PNG samples of a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--delta", help="a modulation delta to apply on top of --checkpoint")
    s.add_argument("--count", type=positive_int, default=16)
    s.add_argument("--truncation", type=float, default=1.0, help="0..2; 1 is none, lower is more typical")
    s.add_argument("--out", required=True, help="folder for the PNGs")
    common(s)
    s.set_defaults(func=cmd_sample)

    # Sub-commands with their own parsers, dispatched in main() before this parser runs.
    for name, text in DELEGATED_HELP.items():
        sub.add_parser(name, add_help=False, help=text).set_defaults(func=None)

    bs = sub.add_parser("bench-speed", help="speed of sampling, adaptation and meta-training: reference path, fast "
                                           "path and a plain DCGAN, on one device")
    bs.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    bs.add_argument("--resolutions", type=int_list, default=[64, 128], help="comma-separated (default 64,128)")
    bs.add_argument("--batches", type=int_list, default=[1, 16, 1024], help="sampling batch sizes (default 1,16,1024)")
    bs.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    bs.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "metagan_64.safetensors",
                    help="the bundled configuration (default checkpoints/metagan_64.safetensors)")
    bs.add_argument("--min-time", type=positive_float, default=1.0,
                    help="seconds of timed calls per figure (default 1)")
    bs.add_argument("--max-reps", type=positive_int, default=50, help="at most this many timed calls per figure")
    bs.add_argument("--variants", action="store_true",
                    help="also time the fast-path settings the auto choice leaves off")
    bs.add_argument("--json", help="also write every figure to this JSON file")
    bs.set_defaults(func=cmd_bench_speed)

    sd = sub.add_parser("set-defaults", help="change the adaptation defaults stored in a checkpoint (in place)")
    sd.add_argument("file")
    sd.add_argument("--adapt", required=True, help="AdaptConfig fields, e.g. steps=150,lr_g=5e-5,loss.r1_gamma=0.1")
    sd.set_defaults(func=cmd_set_defaults)

    i = sub.add_parser("info", help="print a checkpoint's metadata and parameter summary")
    i.add_argument("file")
    i.set_defaults(func=cmd_info)
    return p


DELEGATED_HELP = {
    "build-tasks": "render DiceBear avatar styles into a task folder (see build-tasks --help)",
    "bench-quality": "few-shot quality benchmark on held-out styles against baselines (see bench-quality --help)",
    "train-evaluator": "train the fixed evaluator network used for FD/KID (see train-evaluator --help)",
}


def delegated(name: str):
    return {"build-tasks": dicebear.main, "bench-quality": bench_quality.main, "train-evaluator": evaluator.main}[name]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in DELEGATED_HELP:
        return delegated(argv[0])(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MetaGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
