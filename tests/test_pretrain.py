import torch

from meta_core.adapt import InnerLoop
from meta_core.data import TaskSet, to_float
from meta_core.meta import derived_generator
from meta_core.pretrain import pretrain
from tests.helpers import tiny_adapt, tiny_model


def test_pretraining_is_the_inner_loop_on_pooled_images():
    g = torch.Generator().manual_seed(0)
    tasks = TaskSet(["a", "b"], [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g) for _ in "ab"])
    model, cfg = tiny_model(16), tiny_adapt(steps=1)
    out = pretrain(model, tasks, cfg, steps=3, seed=5, chunk=3)
    ref_g, ref_d, _ = InnerLoop(model, tiny_adapt(steps=3)).run(
        model.g_params(), model.d_params(), to_float(torch.cat(tasks.images)), derived_generator(5, 0x9E7A))
    for n, p in out.G.named_parameters():
        assert torch.equal(p, ref_g[n]), n
    assert out.provenance["pretrained"]["images"] == 8
    seen = []
    pretrain(model, tasks, cfg, steps=5, chunk=2, on_chunk=lambda done, total, m: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_a_time_budget_stops_before_the_next_chunk():
    g = torch.Generator().manual_seed(0)
    tasks = TaskSet(["a"], [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)])
    model = tiny_model(16)
    out = pretrain(model, tasks, tiny_adapt(steps=1), steps=50, chunk=1, seconds=0.0)
    assert out.provenance["pretrained"]["steps"] == 0
    assert all(torch.equal(p, q) for p, q in zip(out.G.parameters(), model.G.parameters()))


def test_pretraining_on_the_fast_path_matches_the_reference():
    from meta_core.fast import FastPath
    g = torch.Generator().manual_seed(0)
    tasks = TaskSet(["a", "b"], [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g) for _ in "ab"])
    model, cfg = tiny_model(16), tiny_adapt(steps=1)
    ref = pretrain(model, tasks, cfg, steps=4, seed=5, chunk=2)
    fast = pretrain(model, tasks, cfg, steps=4, seed=5, chunk=2, fast=FastPath(bf16_sample=False, bf16_train=False))
    for (name, p), (_, q) in zip(sorted(ref.state_dict().items()), sorted(fast.state_dict().items())):
        torch.testing.assert_close(q, p, atol=1e-4, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")
