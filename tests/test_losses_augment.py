import math

import torch

from meta_core import augment, losses
from meta_core.config import AugmentConfig


def test_losses_match_their_definitions():
    real = torch.tensor([0.5, -1.0, 2.0])
    fake = torch.tensor([-0.3, 1.5, 0.0])
    sig = torch.sigmoid
    v = torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean()  # V(D, G)
    torch.testing.assert_close(losses.d_loss(real, fake), -v)
    torch.testing.assert_close(losses.g_loss(fake, "minimax"), torch.log(1 - sig(fake)).mean())
    torch.testing.assert_close(losses.g_loss(fake, "ns_logistic"), -torch.log(sig(fake)).mean())


def test_losses_of_stacked_tasks_are_each_tasks_loss():
    real, fake = torch.randn(3, 5), torch.randn(3, 5)
    per_task = torch.stack([losses.d_loss(r, f) for r, f in zip(real, fake)])
    torch.testing.assert_close(losses.d_loss(real, fake), per_task)
    torch.testing.assert_close(losses.g_loss(fake), torch.stack([losses.g_loss(f) for f in fake]))
    x = torch.randn(2, 4, 3, 2, 2, requires_grad=True)
    r1 = losses.r1_penalty((x ** 2).sum(dim=(2, 3, 4)), x)
    torch.testing.assert_close(r1, (2 * x.detach()).square().sum(dim=(2, 3, 4)).mean(dim=1))


def test_r1_is_squared_input_gradient():
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    logits = (x ** 2).sum(dim=(1, 2, 3))  # gradient 2x
    expected = (2 * x.detach()).square().sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(losses.r1_penalty(logits, x), expected)


def test_draws_are_deterministic_and_use_only_the_given_generator():
    state = torch.random.get_rng_state()
    a = augment.draw(5, 16, 0.5, torch.Generator().manual_seed(3))
    b = augment.draw(5, 16, 0.5, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_translation_is_an_exact_integer_shift_with_zero_fill():
    x = torch.rand(1, 3, 8, 8)
    p = augment.AugmentParams(torch.tensor([[False, True, False]]), torch.zeros(1, 3), torch.tensor([[2, -1]]),
                              torch.zeros(1, 2, dtype=torch.long))
    y = augment.apply(x, p)
    assert torch.equal(y[0, :, :-1, 2:], x[0, :, 1:, :-2])
    assert float(y[0, :, :, :2].abs().sum()) == 0.0 and float(y[0, :, -1, :].abs().sum()) == 0.0


def test_translation_equals_slicing_on_random_batches(device):
    gen = torch.Generator().manual_seed(0)
    for size in (16, 24):
        x = (torch.randn(6, 3, size, size, generator=gen) * 3).to(device)
        p = augment.draw(6, size, 0.7, gen)
        y = augment.apply(x, p, ops=("translation",)).cpu()
        shift = (p.translation * p.enable[:, 1:2].long()).tolist()
        expected = torch.zeros_like(y)
        for i, (dx, dy) in enumerate(shift):  # out[:, r, c] = x[:, r - dy, c - dx] where that is inside
            src = x[i].cpu()[:, max(0, -dy):size - max(0, dy), max(0, -dx):size - max(0, dx)]
            expected[i, :, max(0, dy):size - max(0, -dy), max(0, dx):size - max(0, -dx)] = src
        assert torch.equal(y, expected)


def test_translation_gradient_is_reproducible_bit_for_bit(device):
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(2)).to(device)
    p = augment.draw(8, 16, 1.0, torch.Generator().manual_seed(3))
    weight = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(4)).to(device)
    grads = []
    for _ in range(2):
        t = x.clone().requires_grad_()
        (augment.apply(t, p, ops=("translation",)) * weight).sum().backward()
        grads.append(t.grad.cpu())
    assert torch.equal(grads[0], grads[1])


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(1, 3, 8, 8)
    p = augment.AugmentParams(torch.tensor([[False, False, True]]), torch.zeros(1, 3),
                              torch.zeros(1, 2, dtype=torch.long), torch.tensor([[1, 2]]))
    y = augment.apply(x, p)
    assert float((y[0, 0] == 0).sum()) == 16
    assert float(y[0, 0, 2:6, 1:5].sum()) == 0.0


def test_disabled_ops_are_identity_and_augmentation_is_differentiable():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    off = augment.draw(4, 16, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(augment.apply(x, off), x)
    on = augment.draw(4, 16, 1.0, torch.Generator().manual_seed(0))
    augment.apply(x, on).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_ada_moves_probability_towards_target():
    cfg = AugmentConfig(adaptive=True, target=0.6, speed=0.1)
    assert math.isclose(augment.update_probability(0.5, torch.ones(8), cfg), 0.6)    # D sure of reals: more aug
    assert math.isclose(augment.update_probability(0.5, -torch.ones(8), cfg), 0.4)   # less
    assert augment.update_probability(1.0, torch.ones(8), cfg) == 1.0


def test_augmentation_is_twice_differentiable_as_r1_through_it_needs():
    # R1 differentiates D's input gradient, and D sees augmented reals: every op needs a double backward
    # (grid_sample has none on CUDA, which is why translation is two one-hot matrix products).
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    p = augment.draw(4, 16, 1.0, torch.Generator().manual_seed(1))
    assert torch.autograd.gradgradcheck(lambda t: augment.apply(t, p), (x,))
