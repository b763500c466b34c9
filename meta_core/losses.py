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


def distance_consistency(source: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """Cross-domain distance consistency (Ojha et al., CVPR 2021): how far the adapted G's samples have moved
    relative to each other, against the source G's samples for the same latents. For each layer's feature maps
    [..., B, C, H, W] and each sample i, the softmax over j != i of the cosine similarities of i to j; the loss is
    KL(source || target) per sample, averaged over samples and layers (0 when the relative distances are kept).
    Penalising it keeps the adapted samples as different from each other as the source's were: few-shot
    adaptation otherwise draws the references over and over."""
    total = 0.0
    for src, tgt in zip(source, target):
        log_p_src = _neighbour_log_softmax(src.detach())
        log_p_tgt = _neighbour_log_softmax(tgt)
        kl = (log_p_src.exp() * (log_p_src - log_p_tgt)).sum(-1)  # [..., B]: 0 on the diagonal entries
        total = total + kl.mean(-1)
    return total / len(source)


def _neighbour_log_softmax(features: torch.Tensor) -> torch.Tensor:
    """[..., B, C, H, W] -> [..., B, B]: log-softmax over j != i of cos(f_i, f_j) (the diagonal is -inf)."""
    flat = F.normalize(features.float().flatten(-3), dim=-1)
    sim = flat @ flat.transpose(-1, -2)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    log_p = sim.masked_fill(eye, float("-inf")).log_softmax(-1)
    return log_p.masked_fill(eye, 0.0)


def anchor_l1(fake: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute pixel difference of each anchor sample [..., K, C, H, W] from its reference, averaged over
    the K references (or weighted by `weight` [..., K], which sums to 1 over K): [...]. Keeps every reference
    reachable from a latent of its own (IMLE's coverage idea, with latents fixed at the start), so adaptation
    cannot draw a few of the references and drop the rest."""
    per_reference = (fake.float() - target.float()).abs().mean(dim=(-3, -2, -1))
    return per_reference.mean(-1) if weight is None else (per_reference * weight).sum(-1)


def match_anchors(fakes: torch.Tensor, real: torch.Tensor, size: int = 16) -> torch.Tensor:
    """For each reference [K, C, R, R], the index of a different sample in `fakes` [M, C, R, R] (M >= K): greedily
    the closest remaining pair first, by Euclidean distance at `size` x `size` (shape and colour, not detail)."""
    k, m = real.shape[0], fakes.shape[0]
    if m < k:
        raise ValueError(f"{m} candidate samples cannot give {k} references one each")

    def small(x):
        return F.interpolate(x.float(), size=(size, size), mode="area").flatten(1) if x.shape[-1] > size else \
            x.float().flatten(1)

    dist = torch.cdist(small(real), small(fakes))  # [K, M]
    chosen = torch.empty(k, dtype=torch.long)
    for _ in range(k):
        flat = int(dist.argmin())
        ref, cand = divmod(flat, m)
        chosen[ref] = cand
        dist[ref, :] = float("inf")
        dist[:, cand] = float("inf")
    return chosen
