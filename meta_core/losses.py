"""GAN losses on discriminator logits. R1 is applied lazily by the caller (see `adapt.py`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "ns_logistic") -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))], the same for both kinds (D maximises V(D, G))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str = "ns_logistic") -> torch.Tensor:
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()  # E[log(1 - D(G(z)))], the original objective
    return F.softplus(-fake_logits).mean()      # non-saturating: -E[log D(G(z))]


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] on real images; `real_images` must require grad. Keeps the graph (create_graph)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()
