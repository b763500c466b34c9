"""Metrics checked against independent implementations (a matrix-iteration square root, explicit loops) and known
cases."""
import numpy as np
import pytest
import torch

from meta_core import metrics


def feats(n, d=8, shift=0.0, scale=1.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * scale + shift


def sqrtm_denman_beavers(m: np.ndarray, iterations: int = 100) -> np.ndarray:
    """The principal square root of a matrix with no eigenvalue on the closed negative real axis, by the
    Denman-Beavers iteration: no eigendecomposition and no symmetrisation, unlike the code under test
    (which takes Tr sqrt(S_a S_b) from the eigenvalues of the symmetric S_a^1/2 S_b S_a^1/2)."""
    y, z = m.copy(), np.eye(len(m))
    for _ in range(iterations):
        y, z = (y + np.linalg.inv(z)) / 2, (z + np.linalg.inv(y)) / 2
    return y


def test_frechet_distance_matches_an_independent_matrix_square_root():
    a, b = feats(200, seed=1), feats(150, shift=0.5, scale=1.3, seed=2)
    an, bn = a.double().numpy(), b.double().numpy()
    mu1, mu2 = an.mean(0), bn.mean(0)
    s1, s2 = np.cov(an, rowvar=False), np.cov(bn, rowvar=False)
    covmean = sqrtm_denman_beavers(s1 @ s2)
    np.testing.assert_allclose(covmean @ covmean, s1 @ s2, rtol=0, atol=1e-12)  # the reference is a square root
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_shift():
    a = feats(300)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert metrics.frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)  # ||mu shift||^2, d=8


def test_kid_matches_an_explicit_loop():
    a, b = feats(12, d=4, seed=3), feats(12, d=4, shift=0.3, seed=4)
    mean, std = metrics.kernel_inception_distance(a, b, subsets=1, subset_size=12)

    def k(x, y):
        return (float(x.double() @ y.double()) / 4 + 1) ** 3

    m = 12
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-6) and std == 0.0


def test_kid_is_near_zero_for_the_same_distribution_and_deterministic():
    a, b = feats(400, seed=5), feats(400, seed=6)
    same = metrics.kernel_inception_distance(a, b, subsets=5, subset_size=100)
    far = metrics.kernel_inception_distance(a, b + 2.0, subsets=5, subset_size=100)
    assert abs(same[0]) < 0.1 * far[0]
    assert metrics.kernel_inception_distance(a, b, subsets=5) == metrics.kernel_inception_distance(a, b, subsets=5)


def test_precision_recall_known_cases():
    real = feats(100, seed=7)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)
    collapsed = real[:1].repeat(50, 1) + 1e-6 * feats(50, seed=8)  # one mode: precise, no recall
    p, r = metrics.precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.1


def test_diversity_and_memorisation():
    x = feats(10, seed=9)
    assert metrics.diversity(x[:1].repeat(5, 1)) == 0.0
    assert metrics.diversity(x) > 0
    refs, held = feats(5, seed=10), feats(50, seed=11)
    copies = metrics.memorisation(refs.repeat(4, 1), refs, held)
    assert copies["copies"] == 1.0 and copies["median_ratio"] == 0.0
    fresh = metrics.memorisation(feats(40, seed=12), refs, held)
    assert fresh["median_ratio"] > 0.5
