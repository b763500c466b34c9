"""Pooled pretraining: plain GAN training on the images of every task at once, no meta-learning.

It is the standard transfer-learning baseline (pretrain, then fine-tune with FreezeD and DiffAugment)
and a starting point that meta-training can build on. It runs the same inner loop as adaptation, in
chunks so that progress and checkpoints can be reported between them.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch

from .adapt import InnerLoop
from .config import AdaptConfig
from .data import TaskSet, to_float
from .fast import FastInnerLoop, FastPath
from .meta import derived_generator
from .model import MetaGAN


def pretrain(model: MetaGAN, tasks: TaskSet, cfg: AdaptConfig, steps: int, seed: int = 0, chunk: int = 250,
             on_chunk: Callable[[int, int, MetaGAN], None] | None = None, seconds: float | None = None,
             fast: FastPath | None = None) -> MetaGAN:
    """Train G and D on the pooled images of `tasks` for `steps` steps; returns a new model.

    Adam state restarts at every chunk (betas (0, 0.99): only the second moment has memory).
    `on_chunk(done, total, model_so_far)` runs after each chunk and may raise to stop. With `seconds`,
    no chunk starts once that much time has passed (a time budget; the steps done are recorded).
    `fast`: run each chunk with `fast.FastInnerLoop` (same gradients, faster steps; see fast.py).
    """
    real = to_float(torch.cat(tasks.images)).to(model.device)
    gen = derived_generator(seed, 0x9E7A)
    g, d = model.g_params(), model.d_params()
    done, start = 0, time.perf_counter()
    while done < steps and (seconds is None or time.perf_counter() - start < seconds):
        n = min(chunk, steps - done)
        chunk_cfg = dataclasses.replace(cfg, steps=n)
        loop = InnerLoop(model, chunk_cfg) if fast is None else FastInnerLoop(model, chunk_cfg, fast)
        g, d, _ = loop.run(g, d, real, gen)
        done += n
        if on_chunk is not None:
            on_chunk(done, steps, model.with_params(g, d))
    provenance = dict(model.provenance, pretrained={"steps": done, "images": int(real.shape[0]), "tasks": len(tasks),
                                                    "seconds": round(time.perf_counter() - start, 1)})
    return model.with_params(g, d, provenance=provenance)
