"""Class-conditional pretraining: style vectors in G and D, one per task in pretraining; checkpoints keep the mean
(where adaptation starts) and every task's G vector (where `style_init=nearest` may start)."""
import dataclasses

import pytest
import torch

from meta_core import ModelConfig, Pretrainer, adapt, load, save
from meta_core.adaptation import nearest_style
from meta_core.data import TaskSet
from meta_core.errors import ConfigError
from meta_core.loop import InnerLoop
from tests.helpers import STYLE_LR_MUL as MUL
from tests.helpers import random_images, three_tasks, tiny_adapt, tiny_dcgan, tiny_recipe as recipe, trained_styles


def test_zero_style_vectors_change_nothing():
    plain = tiny_dcgan()
    styled = plain.with_style_vectors(MUL)
    assert styled.config.generator.style_lr_mul == MUL and styled.config.discriminator.style_lr_mul == MUL
    assert set(styled.g_params()) - set(plain.g_params()) == {"style"}
    z, x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), random_images(5) * 2 - 1
    torch.testing.assert_close(styled.G(z), plain.G(z), rtol=0, atol=0)
    torch.testing.assert_close(styled.D(x), plain.D(x), rtol=0, atol=0)
    assert styled.with_style_vectors(2.0).config == styled.config  # vectors already there are kept


def test_the_discriminators_style_is_a_projection_on_its_pooled_features():
    model = tiny_dcgan().with_style_vectors(MUL)
    style = torch.randn(model.D.style.shape, generator=torch.Generator().manual_seed(1))
    x = random_images(3) * 2 - 1
    plain = model.D(x)
    feats = x
    for block in model.D.blocks:
        feats = torch.nn.functional.leaky_relu(block(feats), 0.2)
    with torch.no_grad():
        model.D.style.copy_(style)
    expected = plain + (feats.mean(dim=(2, 3)) * style * MUL).sum(dim=1)
    torch.testing.assert_close(model.D(x), expected, rtol=1e-5, atol=1e-5)


def test_a_batch_of_style_rows_draws_each_sample_in_its_own_style():
    model = tiny_dcgan().with_style_vectors(MUL)
    gen = torch.Generator().manual_seed(2)
    table = torch.randn(2, 16, generator=gen) * 0.05
    z = torch.randn(4, 16, generator=gen)
    labels = torch.tensor([0, 1, 1, 0])
    batch = torch.func.functional_call(model.G, {**model.g_params(), "style": table[labels]}, (z,))
    for i, c in enumerate(labels.tolist()):
        one = torch.func.functional_call(model.G, {**model.g_params(), "style": table[c]}, (z[i:i + 1],))
        torch.testing.assert_close(batch[i:i + 1], one, rtol=1e-5, atol=1e-5)


def test_pretraining_keeps_one_style_per_task_and_trains_only_the_rows_it_drew():
    tasks = three_tasks()
    cfg = dataclasses.replace(recipe(), batch_size=2)  # two reals: at least one task's row is not drawn
    trainer = Pretrainer(tiny_dcgan().with_style_vectors(MUL), tasks, cfg)
    assert trainer.g["style"].shape == (3, 16) and trainer.d["style"].shape == (3, 16)
    assert trainer.m_g["style"].shape == (3, 16)
    trainer.step()
    drawn = set(trainer.labels[torch.randint(0, 12, (2,), generator=torch.Generator().manual_seed(5))].tolist())
    for c in range(3):  # Adam's first step moves a row exactly when it had a gradient
        moved_g = bool(trainer.g["style"][c].abs().sum() > 0)
        moved_d = bool(trainer.d["style"][c].abs().sum() > 0)
        assert moved_g == moved_d == (c in drawn), (c, drawn)


def test_the_checkpoint_keeps_the_mean_style_and_resumes_exactly(tmp_path):
    tasks = three_tasks()
    straight = Pretrainer(tiny_dcgan().with_style_vectors(MUL), tasks, recipe())
    for _ in range(4):
        straight.step()
    out = straight.current_model()
    torch.testing.assert_close(out.G.style, straight.ema["style"].mean(dim=0))
    torch.testing.assert_close(out.D.style, straight.d["style"].mean(dim=0))
    back = load(save(out, tmp_path / "c.safetensors"))
    assert back.config == out.config and torch.equal(back.G.style, out.G.style)
    first = Pretrainer(tiny_dcgan().with_style_vectors(MUL), tasks, recipe())
    for _ in range(2):
        first.step()
    first.save_state(tmp_path / "s.safetensors")
    resumed = Pretrainer(tiny_dcgan().with_style_vectors(MUL), tasks, recipe())
    resumed.load_state(tmp_path / "s.safetensors")
    for _ in range(2):
        resumed.step()
    for name in ("g", "ema", "d", "m_d", "v_g"):
        a, b = getattr(straight, name), getattr(resumed, name)
        assert all(torch.equal(a[n], b[n]) for n in a), name


def test_adaptation_moves_the_style_vectors_at_their_multiplier():
    model = tiny_dcgan().with_style_vectors(MUL)
    g, d, _ = InnerLoop(model, tiny_adapt(steps=2, lr_g=0.01, lr_d=0.01)).run(
        model.g_params(), model.d_params(), random_images(4) * 2 - 1, torch.Generator().manual_seed(1))
    moved = float((g["style"] * MUL).abs().max())  # in the units G adds to w
    # two Adam steps (betas 0, 0.99) move a parameter less than 3 lr: the style moves MUL times that
    assert 3 * 0.01 < moved < 3 * 0.01 * MUL


def test_style_vectors_are_for_the_dcgan_arch_only():
    with pytest.raises(ConfigError, match="dcgan arch only"):
        ModelConfig.for_resolution(16, arch="stylegan2").generator.__class__(style_lr_mul=1.0)
    with pytest.raises(ConfigError, match="finite number"):
        ModelConfig.for_resolution(16, arch="dcgan").generator.__class__(arch="dcgan", z_dim=128, style_lr_mul=-1.0)


def test_a_tasks_own_style_samples_as_that_row_of_the_table():
    trainer = Pretrainer(tiny_dcgan().with_style_vectors(MUL), three_tasks(), recipe())
    for _ in range(3):
        trainer.step()
    assert trainer.styles == 3 and Pretrainer(tiny_dcgan(), three_tasks(), recipe()).styles == 0
    one = trainer.current_model(style=1)
    assert torch.equal(one.G.style, trainer.ema["style"][1]) and torch.equal(one.D.style, trainer.d["style"][1])
    assert not torch.equal(one.G.style, trainer.current_model().G.style)


def test_the_checkpoint_keeps_every_tasks_style_and_a_new_piece_starts_from_them(tmp_path):
    trainer = trained_styles()
    out = load(save(trainer.current_model(), tmp_path / "c.safetensors"))
    assert out.config.generator.style_count == 3
    assert torch.equal(out.G.styles, trainer.ema["style"]) and "styles" not in out.g_params()  # kept, not trained
    again = Pretrainer(out, three_tasks(), recipe())
    assert torch.equal(again.g["style"], trainer.ema["style"]) and torch.equal(again.ema["style"], trainer.ema["style"])
    two = TaskSet(["a", "b"], three_tasks().images[:2])  # other tasks: every row starts from the stored mean
    assert torch.equal(Pretrainer(out, two, recipe()).g["style"], out.G.style.expand(2, -1))


def test_nearest_style_finds_the_style_the_references_were_drawn_in():
    model = trained_styles().current_model()
    with torch.no_grad():  # three clearly different styles
        gen = torch.Generator().manual_seed(3)
        model.G.styles.copy_(torch.randn(3, 16, generator=gen) * 0.1)
    for c in range(3):
        one = {**model.g_params(), "style": model.G.styles[c]}
        refs = torch.func.functional_call(model.G, one, (torch.randn(6, 16, generator=gen),))
        assert nearest_style(model, refs) == c


def test_adaptation_can_start_from_the_nearest_style_and_says_which():
    model = trained_styles().current_model()
    refs = (random_images(4) * 2 - 1)
    result = adapt(model, (refs + 1) / 2, tiny_adapt(steps=1, style_init="nearest"), seed=0)
    index = nearest_style(model, refs)
    assert result.model.provenance["adapted"]["style_init"] == index
    from_row = model.with_params({**model.g_params(), "style": model.G.styles[index]}, model.d_params())
    direct = adapt(from_row, (refs + 1) / 2, tiny_adapt(steps=1), seed=0)
    assert torch.equal(result.model.G.style, direct.model.G.style)
    with pytest.raises(ConfigError, match="class-conditional"):
        adapt(tiny_dcgan(), (refs + 1) / 2, tiny_adapt(steps=1, style_init="nearest"))


def test_style_dropout_trains_a_shared_row_that_checkpoints_start_from(tmp_path):
    tasks = three_tasks()
    cfg = dataclasses.replace(recipe(), style_dropout=1.0)  # every sample at the shared row: no task row moves
    trainer = Pretrainer(tiny_dcgan().with_style_vectors(MUL), tasks, cfg)
    assert trainer.g["style"].shape == (4, 16) and trainer.d["style"].shape == (4, 16) and trainer.styles == 3
    for _ in range(2):
        trainer.step()
    assert not trainer.g["style"][:3].any() and not trainer.d["style"][:3].any()
    assert trainer.g["style"][3].abs().sum() > 0 and trainer.d["style"][3].abs().sum() > 0
    out = trainer.current_model()
    torch.testing.assert_close(out.G.style, trainer.ema["style"][3], rtol=0, atol=0)
    torch.testing.assert_close(out.D.style, trainer.d["style"][3], rtol=0, atol=0)
    assert out.G.styles.shape == (3, 16) and out.config.generator.style_count == 3
    back = load(save(out, tmp_path / "c.safetensors"))
    assert torch.equal(back.G.style, out.G.style) and torch.equal(back.G.styles, out.G.styles)


def test_style_dropout_draws_the_shared_row_at_its_rate_and_resumes_exactly(tmp_path):
    cfg = dataclasses.replace(recipe(), style_dropout=0.5, batch_size=2)
    straight = Pretrainer(tiny_dcgan().with_style_vectors(MUL), three_tasks(), cfg)
    for _ in range(3):
        straight.step()
    first = Pretrainer(tiny_dcgan().with_style_vectors(MUL), three_tasks(), cfg)
    first.step()
    first.save_state(tmp_path / "s.safetensors")
    second = Pretrainer(tiny_dcgan().with_style_vectors(MUL), three_tasks(), cfg)
    second.load_state(tmp_path / "s.safetensors")
    for _ in range(2):
        second.step()
    resumed = second.state_tensors()
    for name, tensor in straight.state_tensors().items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    # 0.5 per sample: over 3 steps of 2 samples some land on the shared row and some on a task's
    assert straight.g["style"][3].abs().sum() > 0 and straight.g["style"][:3].abs().sum() > 0


def test_style_dropout_is_checked():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        dataclasses.replace(recipe(), style_dropout=1.5)
    with pytest.raises(ConfigError, match="--style-lr-mul"):
        Pretrainer(tiny_dcgan(), three_tasks(), dataclasses.replace(recipe(), style_dropout=0.5))
