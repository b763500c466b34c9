"""The pretraining loop: the inner loop's G/D step with one persistent Adam, an EMA of G, exact resume."""
import pytest
import torch

from meta_core import FastPath, PretrainConfig, Pretrainer, sample
from meta_core.data import TaskSet, to_float
from meta_core.errors import UnknownFormatError
from meta_core.loop import InnerLoop
from tests.helpers import tiny_adapt, tiny_model


def toy_tasks():
    g = torch.Generator().manual_seed(0)
    return TaskSet(["a", "b"], [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g) for _ in "ab"])


def recipe(**changes) -> PretrainConfig:
    adapt = tiny_adapt()
    base = dict(lr_g=0.01, lr_d=0.01, batch_size=4, seed=5, augment=adapt.augment, loss=adapt.loss)
    base.update(changes)
    return PretrainConfig(**base)


def test_its_steps_are_the_inner_loops_steps_with_one_adam_throughout():
    model, tasks = tiny_model(16), toy_tasks()
    trainer = Pretrainer(model, tasks, recipe())
    for _ in range(3):
        trainer.step()
    g, d, _ = InnerLoop(model, tiny_adapt(steps=3, lr_g=0.01, lr_d=0.01)).run(
        model.g_params(), model.d_params(), to_float(torch.cat(tasks.images)), torch.Generator().manual_seed(5))
    for n in g:
        torch.testing.assert_close(trainer.g[n], g[n], atol=1e-6, rtol=1e-5, msg=n)
    for n in d:
        torch.testing.assert_close(trainer.d[n], d[n], atol=1e-6, rtol=1e-5, msg=n)
    assert trainer.images_shown == 12 and trainer.steps_done == 3


def test_the_ema_follows_g_with_its_half_life_in_images():
    model, tasks = tiny_model(16), toy_tasks()
    cfg = recipe(ema_kimg=0.01, ema_rampup=0.0)  # half-life 10 images: beta = 0.5 ** (4 / 10)
    trainer = Pretrainer(model, tasks, cfg)
    ema = {n: t.clone() for n, t in model.g_params().items()}
    for _ in range(3):
        trainer.step()
        for n in ema:
            ema[n] = trainer.g[n] + (ema[n] - trainer.g[n]) * 0.5 ** (4 / 10)
    for n in ema:
        torch.testing.assert_close(trainer.ema[n], ema[n], atol=1e-6, rtol=1e-5, msg=n)
    out = trainer.current_model()
    assert all(torch.equal(out.g_params()[n], trainer.ema[n]) for n in ema)  # checkpoints hold the EMA
    assert out.provenance["pretrained"]["images_shown"] == 12
    assert sum(float((trainer.ema[n] - trainer.g[n]).abs().sum()) for n in ema) > 0


def test_resume_from_a_state_file_is_exact(tmp_path):
    tasks = toy_tasks()
    straight = Pretrainer(tiny_model(16), tasks, recipe())
    for _ in range(4):
        straight.step()
    first = Pretrainer(tiny_model(16), tasks, recipe())
    for _ in range(2):
        first.step()
    first.save_state(tmp_path / "run.state.safetensors", {"wall_seconds": 12.5})
    resumed = Pretrainer(tiny_model(16), tasks, recipe())
    assert resumed.load_state(tmp_path / "run.state.safetensors") == {"wall_seconds": 12.5}
    for _ in range(2):
        resumed.step()
    for name in ("g", "ema", "d", "m_g", "v_d"):
        a, b = getattr(straight, name), getattr(resumed, name)
        assert all(torch.equal(a[n], b[n]) for n in a), name
    assert resumed.steps_done == 4 and resumed.images_shown == straight.images_shown


def test_a_model_checkpoint_is_not_a_state_file(tmp_path):
    from meta_core import save
    path = save(tiny_model(16), tmp_path / "model.safetensors")
    with pytest.raises(UnknownFormatError, match="not a pretraining state file"):
        Pretrainer(tiny_model(16), toy_tasks(), recipe()).load_state(path)


def test_bf16_autocast_stays_near_fp32():
    tasks = toy_tasks()
    a = Pretrainer(tiny_model(16), tasks, recipe())
    b = Pretrainer(tiny_model(16), tasks, recipe(), FastPath(channels_last=False, bf16_train=True))
    for _ in range(4):
        a.step(), b.step()
    start, fa, fb = (sample(m, 3, 8) for m in (tiny_model(16), a.current_model(), b.current_model()))
    diff, change = float((fa - fb).abs().mean()), float((fa - start).abs().mean())
    assert 0 < diff < 0.5 * change, (diff, change)


def test_the_fast_path_is_the_same_training():
    tasks = toy_tasks()
    ref, fast = Pretrainer(tiny_model(16), tasks, recipe()), Pretrainer(tiny_model(16), tasks, recipe(),
                                                                       FastPath(bf16_train=False))
    for _ in range(3):
        ref.step(), fast.step()
    for n in ref.g:
        torch.testing.assert_close(fast.g[n], ref.g[n], atol=1e-4, rtol=1e-3, msg=n)
    out = fast.current_model()
    assert all(t.is_contiguous() for t in out.g_params().values())


def test_a_new_piece_from_committed_weights_counts_on_with_a_fresh_adam(tmp_path):
    from meta_core import load, save
    tasks = toy_tasks()
    first = Pretrainer(tiny_model(16), tasks, recipe())
    for _ in range(2):
        first.step()
    path = save(first.current_model(), tmp_path / "piece.safetensors")
    second = Pretrainer(load(path), tasks, recipe())
    assert (second.steps_done, second.images_shown, second.adam_steps) == (2, 8, 0)
    stats = second.step()
    assert stats.step == 3 and second.adam_steps == 1
    # the first step of a fresh Adam is a normal-sized step: lr * sign(grad) for betas (0, 0.99)
    moved = max(float((second.g[n] - first.ema[n]).abs().max()) for n in first.ema)
    assert 0 < moved <= 0.01 * 1.01


def test_frozen_generator_prefixes_stay_put_and_the_rest_trains_as_if_they_were_reset_each_step():
    tasks, frozen = toy_tasks(), ("mapping", "blocks.0")
    model = tiny_model(16)
    names = [n for n in model.g_params() if n.startswith(("mapping.", "blocks.0."))]
    a = Pretrainer(model, tasks, recipe(frozen_g=frozen))
    b = Pretrainer(model, tasks, recipe())
    start = {n: model.g_params()[n].clone() for n in names}
    for _ in range(3):
        a.step(), b.step()
        for n in names:  # b trains everything; put the frozen ones back where they started
            b.g[n].copy_(start[n]), b.ema[n].copy_(start[n])
    assert names and all(torch.equal(a.g[n], start[n]) and torch.equal(a.ema[n], start[n]) for n in names)
    for n in a.g:
        torch.testing.assert_close(a.g[n], b.g[n], atol=1e-6, rtol=1e-5, msg=n)
    for n in a.d:
        torch.testing.assert_close(a.d[n], b.d[n], atol=1e-6, rtol=1e-5, msg=n)
    assert any(not torch.equal(a.g[n], model.g_params()[n]) for n in a.g if n not in names)


def test_frozen_generator_prefixes_must_name_something_and_leave_something():
    from meta_core.errors import ConfigError
    model = tiny_model(16)
    with pytest.raises(ConfigError, match="match no generator parameter"):
        Pretrainer(model, toy_tasks(), recipe(frozen_g=("block",)))  # a prefix of a name, not of its dotted path
    tops = tuple(sorted({n.split(".")[0] for n in model.g_params()}))
    with pytest.raises(ConfigError, match="leave at least one"):
        Pretrainer(model, toy_tasks(), recipe(frozen_g=tops))
