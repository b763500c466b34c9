import copy

import pytest
import torch
import torch.nn.functional as F

from meta_core import MetaConfig, adapt, augment, checkpoint
from meta_core.loop import draw_step_noise
from meta_core.data import TaskSet, to_float
from meta_core.meta import MetaTrainer, derived_generator, fomaml_update, reptile_update
from tests.helpers import tiny_adapt, tiny_model


def toy_tasks(n_tasks=3, per_task=6, res=16, seed=0) -> TaskSet:
    g = torch.Generator().manual_seed(seed)
    return TaskSet([f"t{i}" for i in range(n_tasks)],
                   [torch.randint(0, 256, (per_task, 3, res, res), dtype=torch.uint8, generator=g)
                    for _ in range(n_tasks)])


def meta_cfg(algorithm="reptile", **changes):
    base = dict(algorithm=algorithm, steps=4, meta_batch=2, support_size=3, query_size=3, eps_start=0.6, eps_end=0.2,
                outer_lr=0.05, seed=11, inner=tiny_adapt(steps=2))
    base.update(changes)
    return MetaConfig(**base)


def support_and_query(tasks, task, cfg, gen):
    """The trainer's documented selection: one permutation; support first, query next."""
    images = tasks.images[task]
    order = torch.randperm(images.shape[0], generator=gen)
    return images[order[:cfg.support_size]], images[order[cfg.support_size:cfg.support_size + cfg.query_size]]


def test_pure_outer_updates():
    theta = {"w": torch.tensor([1.0, 2.0])}
    deltas = {"w": torch.tensor([0.5, -1.0]) + torch.tensor([1.5, 1.0])}  # two tasks
    torch.testing.assert_close(reptile_update(theta, deltas, 2, 0.5)["w"], torch.tensor([1.5, 2.0]))
    torch.testing.assert_close(fomaml_update(theta, deltas, 2, 0.1)["w"], torch.tensor([0.9, 2.0]))


def test_reptile_step_equals_hand_computation():
    model, tasks, cfg = tiny_model(16), toy_tasks(), meta_cfg("reptile")
    trainer = MetaTrainer(model, tasks, cfg)
    plan = trainer.plan(0)
    trainer.meta_step()
    theta = {**{f"G.{k}": v for k, v in model.g_params().items()}, **{f"D.{k}": v for k, v in model.d_params().items()}}
    deltas = {k: torch.zeros_like(v) for k, v in theta.items()}
    for slot, task in enumerate(plan):
        gen = derived_generator(cfg.seed, 0, slot)
        support, _ = support_and_query(tasks, task, cfg, gen)
        adapted = adapt(model, to_float(support) * 0.5 + 0.5, cfg.inner, generator=gen).model.state_dict()
        for k in deltas:
            deltas[k] += adapted[k] - theta[k]
    eps = cfg.eps_at(0)
    for k, v in trainer.current_model().state_dict().items():
        torch.testing.assert_close(v, theta[k] + eps * deltas[k] / len(plan), atol=1e-6, rtol=1e-5, msg=k)


def test_fomaml_step_equals_hand_computation():
    model, tasks, cfg = tiny_model(16), toy_tasks(), meta_cfg("fomaml")
    trainer = MetaTrainer(model, tasks, cfg)
    plan = trainer.plan(0)
    trainer.meta_step()
    grads = {}
    for slot, task in enumerate(plan):
        gen = derived_generator(cfg.seed, 0, slot)
        support, query = support_and_query(tasks, task, cfg, gen)
        adapted = adapt(model, to_float(support) * 0.5 + 0.5, cfg.inner, generator=gen).model
        G, D = copy.deepcopy(adapted.G).requires_grad_(True), copy.deepcopy(adapted.D).requires_grad_(True)
        noise = draw_step_noise(gen, query.shape[0], cfg.query_size, 16, 16, cfg.inner.augment.probability)
        real = to_float(query)[noise.real_index]
        with torch.no_grad():
            fake = G(noise.z_d)
        d_loss = (F.softplus(-D(augment.apply(real, noise.aug_real))).mean()
                  + F.softplus(D(augment.apply(fake, noise.aug_fake_d))).mean())
        d_grads = torch.autograd.grad(d_loss, list(D.parameters()))
        g_loss = F.softplus(-D(augment.apply(G(noise.z_g), noise.aug_fake_g))).mean()
        g_grads = torch.autograd.grad(g_loss, list(G.parameters()))
        for (n, _), gr in zip(D.named_parameters(), d_grads):
            grads[f"D.{n}"] = grads.get(f"D.{n}", 0) + gr
        for (n, _), gr in zip(G.named_parameters(), g_grads):
            grads[f"G.{n}"] = grads.get(f"G.{n}", 0) + gr
    before = model.state_dict()
    for k, v in trainer.current_model().state_dict().items():
        torch.testing.assert_close(v, before[k] - cfg.outer_lr * grads[k] / len(plan), atol=1e-6, rtol=1e-5, msg=k)


def test_meta_training_records_inner_loop_as_adaptation_defaults():
    model, cfg = tiny_model(16), meta_cfg(steps=1)
    out = MetaTrainer(model, toy_tasks(), cfg).run()
    assert out.adapt_defaults == cfg.inner and out.meta_config == cfg and out.meta_step == 1
    assert model.meta_step == 0  # the input model is untouched


def test_resume_follows_the_uninterrupted_trajectory(tmp_path):
    tasks, cfg = toy_tasks(), meta_cfg(steps=3)
    straight = MetaTrainer(tiny_model(16), tasks, cfg).run()
    first = MetaTrainer(tiny_model(16), tasks, cfg).run(until=2)
    path = checkpoint.save(first, tmp_path / "half.safetensors")
    resumed_model = checkpoint.load(path)
    resumed = MetaTrainer(resumed_model, tasks, resumed_model.meta_config).run()
    assert resumed.meta_step == 3
    assert resumed.content_hash() == straight.content_hash()


def test_fewer_tasks_than_meta_batch_and_small_tasks():
    tasks = toy_tasks(n_tasks=1, per_task=2)
    out = MetaTrainer(tiny_model(16), tasks, meta_cfg(steps=1, meta_batch=3, support_size=5)).run()
    assert out.meta_step == 1


def test_diverging_tasks_are_skipped_and_all_diverging_raises(monkeypatch):
    from meta_core import TrainingDivergedError, losses
    monkeypatch.setattr(losses, "d_loss", lambda real, fake, *a: (real.mean() + fake.mean()) * float("nan"))
    cfg = meta_cfg(steps=1, inner=tiny_adapt(steps=3, max_rollbacks=1))
    with pytest.raises(TrainingDivergedError, match="every task diverged"):
        MetaTrainer(tiny_model(16), toy_tasks(), cfg).run()


def test_meta_training_stops_on_a_collapsed_generator():
    from meta_core import TrainingDivergedError
    model = tiny_model(16)
    with torch.no_grad():
        for name, p in model.G.named_parameters():
            if ".torgb." in name:
                p.zero_()
    cfg = meta_cfg(steps=1, inner=tiny_adapt(steps=1, lr_g=0.0, lr_d=0.0))
    with pytest.raises(TrainingDivergedError, match="collapsed"):
        MetaTrainer(model, toy_tasks(), cfg).run()


def test_fit_schedule_ends_the_run_and_anneals_eps_to_its_end():
    cfg = meta_cfg("reptile", steps=50)
    trainer = MetaTrainer(tiny_model(16), toy_tasks(), cfg)
    eps = []

    def on_step(stats):
        eps.append(stats.eps)
        if stats.step == 1:
            trainer.fit_schedule(3)

    trainer.run(on_step=on_step)
    assert trainer.step == 3 and trainer.cfg.steps == 3
    assert eps[0] == cfg.eps_start and eps[-1] == pytest.approx(cfg.eps_end)
    trainer.fit_schedule(1)  # fewer than done: the run ends where it is
    assert trainer.cfg.steps == 3
