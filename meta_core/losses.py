"""GAN losses on discriminator logits [..., B], reduced over the batch (the last dimension), so that
logits of T tasks stacked as [T, B] give T losses. R1 is applied lazily by the caller (see `loop.py`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))]: D's side of V(D, G), the same for either G loss."""
    return F.softplus(-real_logits).mean(-1) + F.softplus(fake_logits).mean(-1)


def g_loss(fake_logits: torch.Tensor, kind: str = "ns_logistic") -> torch.Tensor:
    """G's loss: "ns_logistic" (non-saturating, -E[log D(G(z))]) or "minimax" (E[log(1 - D(G(z)))])."""
    if kind == "minimax":
        return -F.softplus(fake_logits).mean(-1)
    return F.softplus(-fake_logits).mean(-1)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] over the batch of real images [..., B, C, H, W], which must require grad.
    Keeps the graph (create_graph) so the penalty can be differentiated."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=(-3, -2, -1)).mean(-1)
