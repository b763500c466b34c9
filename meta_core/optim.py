"""Adam, once, for every loop of the engine (adaptation, meta-training's tasks, pretraining).

Written here rather than taken from `torch.optim.adam.adam` for two things torch's functional Adam does
not do: weights stacked along a task dimension whose tasks have accepted different numbers of steps
(one bias correction per task), and bias-correction scalars read from a device table, so a captured
CUDA graph replays any step. The arithmetic is torch.optim.Adam's (no weight decay, no amsgrad);
`tests/test_optim.py` checks it against `torch.optim.Adam`.
"""
from __future__ import annotations

import math

import torch


def bias_corrections(lr: float, betas: tuple[float, float], t: int) -> tuple[float, float]:
    """(lr / (1 - b1**t), sqrt(1 - b2**t)) for Adam step t >= 1, in float64 on the host."""
    b1, b2 = betas
    return lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t)


def scalar_table(lrs: tuple[float, ...], betas: tuple[float, float], steps: int) -> torch.Tensor:
    """[steps + 1, 2 * len(lrs)] float32: row t holds (step_size, bc2_sqrt) of each lr for step t (row 0 unused)."""
    rows = [[0.0, 1.0] * len(lrs)]
    for t in range(1, steps + 1):
        rows.append([x for lr in lrs for x in bias_corrections(lr, betas, t)])
    return torch.tensor(rows, dtype=torch.float64).float()


def adam_(params: list[torch.Tensor], grads: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor],
          step_size, bc2_sqrt, betas: tuple[float, float], eps: float = 1e-8, foreach: bool = True) -> None:
    """One Adam step in place on `params`, `m` and `v`.

    Args:
        params, grads, m, v: lists of tensors of equal shapes (first and second moments start at zero).
        step_size: lr / (1 - b1**t); bc2_sqrt: sqrt(1 - b2**t) (see `bias_corrections`). Python floats,
            0-dim tensors on the params' device, or [T] tensors for weights stacked along a leading task
            dimension of size T (one correction per task; the per-tensor loop then broadcasts them).
        betas: (b1, b2).
        foreach: use the multi-tensor `torch._foreach_*` kernels (same arithmetic, fewer launches);
            ignored for per-task [T] scalars.
    """
    if not params:
        return
    b1, b2 = betas
    per_task = isinstance(step_size, torch.Tensor) and step_size.dim() == 1
    if foreach and not per_task:
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, torch._foreach_mul(grads, 1 - b1))
        torch._foreach_mul_(v, b2)
        sq = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(sq, 1 - b2)
        torch._foreach_add_(v, sq)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_mul(m, step_size)
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(params, update)
        return
    for p, g, mi, vi in zip(params, grads, m, v):
        s, c = step_size, bc2_sqrt
        if per_task:
            shape = (-1,) + (1,) * (p.dim() - 1)
            s, c = step_size.view(shape), bc2_sqrt.view(shape)
        mi.mul_(b1).add_(g * (1 - b1))
        vi.mul_(b2).add_(g * g * (1 - b2))
        p.sub_(mi * s / (vi.sqrt() / c + eps))
