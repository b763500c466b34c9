"""The one Adam (meta_core/optim.py) against torch.optim.Adam, and its configurations against each other."""
import pytest
import torch

from meta_core.optim import adam_, bias_corrections, scalar_table

SHAPES = [(4, 3, 3, 3), (7,), (5, 2)]


def grads_for(gen, params):
    return [torch.randn(p.shape, generator=gen) for p in params]


@pytest.mark.parametrize("foreach", [True, False])
def test_adam_equals_torch_optim_adam(foreach):
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in SHAPES]
    lr, betas = 0.003, (0.5, 0.99)
    theirs = [t.clone().requires_grad_(True) for t in start]
    opt = torch.optim.Adam(theirs, lr=lr, betas=betas, eps=1e-8, foreach=False)
    mine = [t.clone() for t in start]
    m, v = [torch.zeros_like(t) for t in mine], [torch.zeros_like(t) for t in mine]
    for t in range(1, 8):
        grads = grads_for(gen, start)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        adam_(mine, grads, m, v, *bias_corrections(lr, betas, t), betas, foreach=foreach)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=1e-6)
        assert not torch.equal(a, start[0]) if a.shape == start[0].shape else True


@pytest.mark.parametrize("tensor_scalars", [False, True])
def test_foreach_equals_the_per_tensor_loop_bit_for_bit(tensor_scalars):
    gen = torch.Generator().manual_seed(1)
    a = [torch.randn(s, generator=gen) for s in SHAPES]
    b = [t.clone() for t in a]
    ma, va = [torch.zeros_like(t) for t in a], [torch.zeros_like(t) for t in a]
    mb, vb = [torch.zeros_like(t) for t in b], [torch.zeros_like(t) for t in b]
    table = scalar_table((0.01,), (0.0, 0.99), 5)
    for t in range(1, 6):
        grads = grads_for(gen, a)
        s, c = (table[t, 0], table[t, 1]) if tensor_scalars else (float(table[t, 0]), float(table[t, 1]))
        adam_(a, grads, ma, va, s, c, (0.0, 0.99), foreach=True)
        adam_(b, grads, mb, vb, s, c, (0.0, 0.99), foreach=False)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_per_task_scalars_equal_separate_runs():
    """Stacked weights of two tasks at different Adam steps: one call equals each task's own step."""
    gen = torch.Generator().manual_seed(2)
    lr, betas = 0.002, (0.0, 0.99)
    stacked = [torch.randn(2, *s, generator=gen) for s in SHAPES]
    m = [torch.rand(p.shape, generator=gen) for p in stacked]
    v = [torch.rand(p.shape, generator=gen) for p in stacked]
    grads = grads_for(gen, stacked)
    steps = (3, 7)
    table = scalar_table((lr,), betas, 8)
    sizes, bc2 = table[list(steps), 0], table[list(steps), 1]
    separate = []
    for j, t in enumerate(steps):
        p, mj, vj = [x[j].clone() for x in stacked], [x[j].clone() for x in m], [x[j].clone() for x in v]
        adam_(p, [g[j] for g in grads], mj, vj, float(table[t, 0]), float(table[t, 1]), betas, foreach=False)
        separate.append(p)
    adam_(stacked, grads, m, v, sizes, bc2, betas)
    for i in range(len(SHAPES)):
        for j in range(2):
            torch.testing.assert_close(stacked[i][j], separate[j][i], atol=0, rtol=0)


def test_scalar_table_holds_the_bias_corrections():
    table = scalar_table((0.1, 0.2), (0.5, 0.9), 3)
    assert table.shape == (4, 4)
    s, c = bias_corrections(0.2, (0.5, 0.9), 2)
    torch.testing.assert_close(table[2, 2:], torch.tensor([s, c], dtype=torch.float32))
