"""Sample-quality metrics over feature vectors: FD, KID, precision/recall, diversity, memorisation.

All functions take features [N, D] (rows are images) from a fixed evaluator network, never from the
GAN's own discriminator. Computation is float64 on the CPU: the matrices are small.
"""
from __future__ import annotations

import torch


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to two feature sets."""
    a, b = _f64(a), _f64(b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues) of the symmetric S_a^(1/2) S_b S_a^(1/2).
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp(min=0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross)


def kernel_inception_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 10, subset_size: int = 100,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over random subsets.

    Returns (mean, std) over subsets. Subsets are drawn without replacement from each set with a
    private generator, so the result is deterministic.
    """
    a, b = _f64(a), _f64(b)
    d = a.shape[1]
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = 1 - torch.eye(m, dtype=torch.float64)
        mmd = (kxx * off).sum() / (m * (m - 1)) + (kyy * off).sum() / (m * (m - 1)) - 2 * kxy.mean()
        values.append(float(mmd))
    t = torch.tensor(values)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # k+1: the nearest is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    precision: share of fakes inside the real manifold; recall: share of reals inside the fake manifold.
    """
    real, fake = _f64(real), _f64(fake)
    k_real, k_fake = min(k, real.shape[0] - 1), min(k, fake.shape[0] - 1)
    if k_real < 1 or k_fake < 1:
        raise ValueError("precision/recall need at least 2 samples in each set")
    r_real, r_fake = _knn_radii(real, k_real), _knn_radii(fake, k_fake)
    d = torch.cdist(fake, real)  # [F, R]
    precision = (d <= r_real[None, :]).any(dim=1).double().mean()
    recall = (d.T <= r_fake[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def diversity(features: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between samples (0 when every sample is the same)."""
    x = _f64(features)
    n = x.shape[0]
    if n < 2:
        return 0.0
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))


def memorisation(fake: torch.Tensor, references: torch.Tensor, heldout: torch.Tensor) -> dict:
    """How close samples sit to the K references compared with unseen real images of the same style.

    ratio_i = d(fake_i, nearest reference) / d(fake_i, nearest held-out real). A ratio well below 1 means
    the sample is closer to a reference than real images of the style are: a copy rather than a new image.
    Returns the median ratio and the share of samples with ratio < 0.5.
    """
    fake, references, heldout = _f64(fake), _f64(references), _f64(heldout)
    d_ref = torch.cdist(fake, references).min(dim=1).values
    d_held = torch.cdist(fake, heldout).min(dim=1).values.clamp(min=1e-12)
    ratio = d_ref / d_held
    return {"median_ratio": float(ratio.median()), "copies": float((ratio < 0.5).double().mean())}
