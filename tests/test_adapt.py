import copy
import dataclasses

import math

import pytest
import torch
import torch.nn.functional as F

from meta_core import AdaptConfig, ReferenceImageError, TrainingDivergedError, adapt, augment, losses
from meta_core.loop import COLLAPSE_STD, StepProgress, draw_step_noise, sample_diversity, trainable_names
from meta_core.config import AugmentConfig, LossConfig, apply_overrides
from meta_core.errors import ConfigError
from meta_core.images import prepare_references
from tests.helpers import params_equal, random_images, tiny_adapt, tiny_dcgan, tiny_model


def reference_adapt(model, real, cfg: AdaptConfig, gen: torch.Generator):
    """A hand-unrolled loop: nn.Modules, torch.optim.Adam, losses written out. Same random draws."""
    G, D = copy.deepcopy(model.G).requires_grad_(False), copy.deepcopy(model.D).requires_grad_(False)
    g_names, d_names = trainable_names(model, cfg)
    for n in g_names:
        G.get_parameter(n).requires_grad_(True)
    for n in d_names:
        D.get_parameter(n).requires_grad_(True)
    opt_g = torch.optim.Adam([G.get_parameter(n) for n in g_names], lr=cfg.lr_g, betas=cfg.betas, eps=1e-8)
    opt_d = torch.optim.Adam([D.get_parameter(n) for n in d_names], lr=cfg.lr_d, betas=cfg.betas, eps=1e-8)
    source = copy.deepcopy(G)
    z_dim, res = model.config.generator.z_dim, model.resolution
    if cfg.anchor_weight:  # drawn before the steps' noise; the closest free (reference, sample) pair first
        z_cand = torch.randn(cfg.anchor_candidates, z_dim, generator=gen)
        with torch.no_grad():
            cand = G(z_cand)
        pairs = sorted((float((real[k] - cand[m]).square().sum().sqrt()), k, m)
                       for k in range(real.shape[0]) for m in range(cand.shape[0]))
        anchor, used = {}, set()
        for _, k, m in pairs:
            if k not in anchor and m not in used:
                anchor[k] = m
                used.add(m)
        z_anchor = z_cand[[anchor[k] for k in range(real.shape[0])]]
    for step in range(cfg.steps):
        noise = draw_step_noise(gen, real.shape[0], cfg.batch_size, z_dim, res, cfg.augment.probability)
        with torch.no_grad():
            fake = G(noise.z_d)
        real_b = real[noise.real_index]
        r1_step = step % cfg.loss.r1_interval == 0
        if r1_step:
            real_b = real_b.clone().requires_grad_(True)
        real_logits = D(augment.apply(real_b, noise.aug_real))
        fake_logits = D(augment.apply(fake, noise.aug_fake_d))
        loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if r1_step:
            (grad,) = torch.autograd.grad(real_logits.sum(), real_b, create_graph=True)
            loss_d = loss_d + grad.square().sum(dim=(1, 2, 3)).mean() * cfg.loss.r1_gamma / 2 * cfg.loss.r1_interval
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        fake, maps = G(noise.z_g, features=True)
        loss_g = F.softplus(-D(augment.apply(fake, noise.aug_fake_g))).mean()
        if cfg.cdc_weight:
            with torch.no_grad():
                _, source_maps = source(noise.z_g, features=True)
            loss_g = loss_g + cfg.cdc_weight * unrolled_distance_consistency(source_maps, maps)
        if cfg.anchor_weight:
            loss_g = loss_g + cfg.anchor_weight * (G(z_anchor) - real).abs().mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return dict(G.named_parameters()), dict(D.named_parameters())


def unrolled_distance_consistency(source_maps, target_maps):
    """Ojha et al.'s loss with a loop per layer and sample: softmax over the other samples' cosine similarities,
    KL(source || target), averaged over samples and layers."""
    total = 0.0
    for src, tgt in zip(source_maps, target_maps):
        n = src.shape[0]
        for i in range(n):
            others = [j for j in range(n) if j != i]
            p = torch.stack([F.cosine_similarity(src[i].flatten(), src[j].flatten(), dim=0) for j in others]).softmax(0)
            q = torch.stack([F.cosine_similarity(tgt[i].flatten(), tgt[j].flatten(), dim=0) for j in others]).softmax(0)
            total = total + (p * (p.log() - q.log())).sum() / n
    return total / len(source_maps)


@pytest.mark.parametrize("strategy, cdc, anchor", [("full", 0.0, 0.0), ("freeze_d", 0.0, 0.0), ("modulation", 0.0, 0.0),
                                                   ("full", 50.0, 0.0), ("modulation", 50.0, 0.0), ("full", 0.0, 3.0),
                                                   ("full", 50.0, 3.0)])
def test_adaptation_equals_hand_unrolled_loop(strategy, cdc, anchor):
    model = tiny_model(16)
    refs = random_images(5, 16)
    cfg = tiny_adapt(steps=4, strategy=strategy, lr_g=0.01, lr_d=0.01, cdc_weight=cdc, anchor_weight=anchor,
                     anchor_candidates=12)
    result = adapt(model, refs, cfg, generator=torch.Generator().manual_seed(7))
    ref_g, ref_d = reference_adapt(model, refs * 2 - 1, cfg, torch.Generator().manual_seed(7))
    # Adam turns float32 rounding in a near-zero gradient into a full step: with the distance term an element
    # or two in a thousand ends 2e-4 away (a step here is ~1e-2), so that case gets a looser bound.
    atol = 5e-4 if cdc else 2e-5
    for name, p in result.model.G.named_parameters():
        torch.testing.assert_close(p, ref_g[name].detach(), atol=atol, rtol=1e-4, msg=name)
    for name, p in result.model.D.named_parameters():
        torch.testing.assert_close(p, ref_d[name].detach(), atol=atol, rtol=1e-4, msg=name)


def test_strategies_train_only_their_parameters():
    model = tiny_model(16)
    refs = random_images(3, 16)
    for strategy, frozen_g, frozen_d in [
        ("freeze_d", set(), set(model.D.frozen_parameter_names(1))),
        ("modulation", {n for n, _ in model.G.named_parameters()} - set(model.G.modulation_parameter_names()),
         set(model.D.frozen_parameter_names(1))),
    ]:
        out = adapt(model, refs, tiny_adapt(strategy=strategy), seed=1).model
        for n, p in out.G.named_parameters():
            assert torch.equal(p, model.G.get_parameter(n)) == (n in frozen_g), (strategy, n)
        for n, p in out.D.named_parameters():
            assert torch.equal(p, model.D.get_parameter(n)) == (n in frozen_d), (strategy, n)


def test_input_model_is_unchanged_and_result_is_new():
    model = tiny_model(16)
    before = model.content_hash()
    result = adapt(model, random_images(4, 16), tiny_adapt(), seed=0)
    assert model.content_hash() == before
    assert result.model.content_hash() != before
    assert result.model.G is not model.G


def test_same_seed_same_result_different_seed_differs(device):
    # Bit for bit, also on CUDA: nothing in a step may sum in a varying order (atomics).
    model = tiny_model(16, device=device)
    refs = random_images(4, 16)
    a = adapt(model, refs, tiny_adapt(), seed=3).model.content_hash()
    b = adapt(model, refs, tiny_adapt(), seed=3).model.content_hash()
    c = adapt(model, refs, tiny_adapt(), seed=4).model.content_hash()
    assert a == b != c


def nan_g_loss_on_second_call(monkeypatch) -> None:
    """The second call of the G loss (the second step's G step) returns NaN."""
    calls = {"n": 0}
    real_g_loss = losses.g_loss

    def nan_on_second_call(*args, **kwargs):
        calls["n"] += 1
        out = real_g_loss(*args, **kwargs)
        return out * float("nan") if calls["n"] == 2 else out

    monkeypatch.setattr(losses, "g_loss", nan_on_second_call)


def test_forced_non_finite_loss_rolls_back(monkeypatch):
    model = tiny_model(16)
    refs = random_images(4, 16)
    one_step = adapt(model, refs, tiny_adapt(steps=1), seed=5).model
    nan_g_loss_on_second_call(monkeypatch)
    result = adapt(model, refs, tiny_adapt(steps=2), seed=5)
    assert result.stats.rollbacks == 1
    assert params_equal(result.model.g_params(), one_step.g_params())
    assert params_equal(result.model.d_params(), one_step.d_params())  # the D half of the step was undone too


def test_persistent_non_finite_loss_raises(monkeypatch):
    monkeypatch.setattr(losses, "d_loss", lambda real, fake, *a: (real.mean() + fake.mean()) * float("nan"))
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        adapt(tiny_model(16), random_images(2, 16), tiny_adapt(steps=5, max_rollbacks=2), seed=0)


def test_cancel_from_callback_leaves_model_untouched():
    model = tiny_model(16)
    before = model.content_hash()
    seen = []

    class Cancelled(Exception):
        pass

    def on_step(p: StepProgress):
        seen.append((p.step, p.total, p.rollbacks, math.isfinite(p.d_loss)))
        shown = p.preview(torch.randn(2, 16))
        assert shown.shape == (2, 3, 16, 16) and float(shown.min()) >= 0 and float(shown.max()) <= 1
        if p.step == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        adapt(model, random_images(3, 16), tiny_adapt(steps=5), seed=0, on_step=on_step)
    assert seen == [(1, 5, 0, True), (2, 5, 0, True)]
    assert model.content_hash() == before


def test_defaults_come_from_the_model():
    model = tiny_model(16)
    model.adapt_defaults = tiny_adapt(steps=2)
    assert adapt(model, random_images(2, 16), seed=0).stats.steps == 2


def test_adaptive_augmentation_changes_probability():
    cfg = tiny_adapt(steps=3, augment=AugmentConfig(probability=0.5, adaptive=True, speed=0.1))
    p = adapt(tiny_model(16), random_images(3, 16), cfg, seed=0).stats.aug_probability
    assert p != 0.5 and 0.0 <= p <= 1.0


# --- reference images ---------------------------------------------------------------------------

def test_references_of_any_size_and_channel_count():
    images = [torch.rand(1, 20, 30), torch.rand(2, 40, 40), torch.rand(3, 64, 17), torch.rand(4, 9, 9)]
    out = prepare_references(images, 16)
    assert out.shape == (4, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1
    rgba = torch.zeros(1, 4, 16, 16)  # fully transparent: the background shows
    torch.testing.assert_close(prepare_references(rgba, 16, background=(1.0, 0.0, 0.0))[0, :, 0, 0],
                               torch.tensor([1.0, 0.0, 0.0]))
    u16 = torch.full((1, 1, 16, 16), 65535, dtype=torch.int32)
    assert float(prepare_references(u16, 16).min()) == 1.0


@pytest.mark.parametrize("images, match", [
    ([], "no reference images"),
    (torch.rand(65, 3, 16, 16), "at most 64"),
    (torch.rand(1, 3, 1, 1), "at least 8x8"),
    (torch.rand(1, 5, 16, 16), "5 channels"),
    (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    (torch.full((1, 3, 16, 16), 2.0), "expected 0..1"),
])
def test_bad_references_raise_typed_errors(images, match):
    with pytest.raises(ReferenceImageError, match=match):
        prepare_references(images, 16)


@pytest.mark.parametrize("cls, kwargs, match", [
    (AdaptConfig, {"steps": 0}, "steps 0"), (AdaptConfig, {"lr_g": float("nan")}, "lr_g"),
    (AdaptConfig, {"lr_d": -1.0}, "lr_d"), (AdaptConfig, {"strategy": "lora"}, "unknown strategy"),
    (AdaptConfig, {"ema_half_life": -1.0}, "ema_half_life"),
    (AdaptConfig, {"cdc_weight": -1.0}, "cdc_weight"),
    (AdaptConfig, {"cdc_weight": 1.0, "batch_size": 2}, "batch_size >= 3"),
    (AdaptConfig, {"mirror": "yes"}, "true or false"),
    (AdaptConfig, {"anchor_weight": float("nan")}, "anchor_weight"),
    (AdaptConfig, {"anchor_candidates": 0}, "anchor_candidates"),
    (LossConfig, {"kind": "wgan"}, "unknown loss"), (AugmentConfig, {"probability": 1.5}, "probability"),
])
def test_bad_configs_raise(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


def test_adaptation_under_inference_mode_equals_normal_mode():
    # ComfyUI runs every node under torch.inference_mode(); adaptation must still train, identically.
    refs = random_images(3, 16)
    normal = adapt(tiny_model(16), refs, tiny_adapt(), seed=2).model.content_hash()
    with torch.inference_mode():
        model = tiny_model(16)
        inside = adapt(model, refs, tiny_adapt(), seed=2).model
        assert inside.content_hash() == normal


def collapsed_model():
    model = tiny_model(16)
    with torch.no_grad():
        for name, p in model.G.named_parameters():
            if ".torgb." in name:
                p.zero_()  # every image is tanh(0): one grey image for every z
    return model


def test_collapsed_generator_stops_with_a_message():
    with pytest.raises(TrainingDivergedError, match="collapsed at step 1"):
        adapt(collapsed_model(), random_images(2, 16), tiny_adapt(steps=4, lr_g=0.0, lr_d=0.0), seed=0)


def test_healthy_adaptation_passes_the_collapse_check():
    model = tiny_model(16)
    assert sample_diversity(model, model.g_params()) > 10 * COLLAPSE_STD


def test_every_step_rolled_back_is_an_error_not_the_input_model(monkeypatch):
    monkeypatch.setattr(losses, "d_loss", lambda real, fake, *a: (real.mean() + fake.mean()) * float("nan"))
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        adapt(tiny_model(16), random_images(2, 16), tiny_adapt(steps=2, max_rollbacks=5), seed=0)


def test_ema_adaptation_returns_the_ema_of_the_plain_runs_weights():
    model = tiny_model(16)
    refs = random_images(4, 16)
    raw = []
    plain = adapt(model, refs, tiny_adapt(steps=4), seed=3,
                  on_step=lambda p: raw.append({n: t.clone() for n, t in p.weights.items()}))
    cfg = tiny_adapt(steps=4, ema_half_life=2.0)
    ema = adapt(model, refs, cfg, seed=3)
    expected = {n: t.clone() for n, t in model.g_params().items()}
    for weights in raw:  # the EMA rides on the plain run: same D, same G steps, only the output differs
        for n in expected:
            expected[n].lerp_(weights[n], 1 - cfg.ema_beta)
    assert cfg.ema_beta == pytest.approx(0.5 ** 0.5)
    assert params_equal(ema.model.d_params(), plain.model.d_params())
    for n, t in ema.model.g_params().items():
        torch.testing.assert_close(t, expected[n], rtol=0, atol=1e-6)
    assert not params_equal(ema.model.g_params(), plain.model.g_params())


def test_mirror_trains_on_the_references_and_their_flips():
    model = tiny_model(16)
    refs = random_images(3, 16)
    mirrored = adapt(model, refs, tiny_adapt(steps=3, mirror=True), seed=4).model
    doubled = adapt(model, torch.cat([refs, refs.flip(-1)]), tiny_adapt(steps=3), seed=4).model
    plain = adapt(model, refs, tiny_adapt(steps=3), seed=4).model
    assert params_equal(mirrored.g_params(), doubled.g_params())
    assert params_equal(mirrored.d_params(), doubled.d_params())
    assert not params_equal(mirrored.g_params(), plain.g_params())


def test_ema_adaptation_rolls_back_its_average_too(monkeypatch):
    model = tiny_model(16)
    refs = random_images(4, 16)
    cfg = tiny_adapt(steps=1, ema_half_life=1.0)
    one_step = adapt(model, refs, cfg, seed=5).model
    nan_g_loss_on_second_call(monkeypatch)
    result = adapt(model, refs, dataclasses.replace(cfg, steps=2), seed=5)
    assert result.stats.rollbacks == 1
    assert params_equal(result.model.g_params(), one_step.g_params())


def test_overrides_apply_typed_and_nested_fields_and_name_the_choices():
    base = AdaptConfig()
    cfg = apply_overrides(base, "steps=150, lr_g=5e-5,strategy=full,loss.r1_gamma=0.1,augment.adaptive=true")
    assert cfg == dataclasses.replace(base, steps=150, lr_g=5e-5, strategy="full",
                                      loss=dataclasses.replace(base.loss, r1_gamma=0.1),
                                      augment=dataclasses.replace(base.augment, adaptive=True))
    assert apply_overrides(base, "") == base
    assert apply_overrides(base, "augment.ops=translation+cutout").augment.ops == ("translation", "cutout")
    assert apply_overrides(base, "augment.ops=none").augment.ops == ()
    for bad, match in (("augment.ops=blur", "unknown augmentation op"),
                       ("steps=1.5", "not a valid int"), ("augment=x", "augment.<field>"), ("steps", "name=value"),
                       ("loss.nope=1", "r1_gamma"), ("strategy=lora", "unknown strategy")):
        with pytest.raises(ConfigError, match=match):
            apply_overrides(base, bad)


@pytest.mark.parametrize("make", [tiny_model, tiny_dcgan])
def test_distance_consistency_is_zero_for_the_source_and_grows_as_samples_converge(make):
    model = make()
    z = torch.randn(6, model.config.generator.z_dim, generator=torch.Generator().manual_seed(1))
    img, maps = model.G(z, features=True)
    assert torch.equal(img, model.G(z)) and len(maps) >= 2
    assert float(losses.distance_consistency(maps, maps)) < 1e-6
    scaled = [m * torch.linspace(0.5, 2.0, 6).view(6, 1, 1, 1) for m in maps]  # cosine: per-sample scale is free
    assert float(losses.distance_consistency(maps, scaled)) < 1e-6
    collapsing = [m + 3.0 * m[:1] for m in maps]  # every sample pulled towards the first
    assert float(losses.distance_consistency(maps, collapsing)) > 1e-3


def test_distance_consistency_leaves_the_first_step_alone_and_changes_the_later_ones():
    """Its gradient is 0 where G still equals its source (step 1), not after."""
    model, refs = tiny_model(16), random_images(5, 16)
    runs = {w: [adapt(model, refs, tiny_adapt(steps=s, lr_g=0.01, lr_d=0.01, cdc_weight=w), seed=3) for s in (1, 3)]
            for w in (0.0, 100.0)}
    g = {w: [r.model.g_params() for r in rs] for w, rs in runs.items()}
    for name in g[0.0][0]:
        torch.testing.assert_close(g[100.0][0][name], g[0.0][0][name], atol=2e-5, rtol=1e-4)  # a step is ~1e-2
    assert not all(torch.allclose(g[100.0][1][n], g[0.0][1][n], atol=1e-4) for n in g[0.0][1])


def test_anchors_pair_each_reference_with_its_own_nearest_sample():
    refs = random_images(4, 32, seed=1) * 2 - 1
    others = random_images(6, 32, seed=2) * 2 - 1
    order = torch.tensor([2, 0, 3, 1])
    fakes = torch.cat([others[:3], refs[order] + 0.01, others[3:]])  # reference order[i] is sample 3 + i
    chosen = losses.match_anchors(fakes, refs)
    assert chosen.tolist() == [3 + order.tolist().index(k) for k in range(4)]
    twins = torch.cat([refs[:1], refs[:1] + 0.01, others[:2]])  # two references closest to one sample: one each
    two = losses.match_anchors(twins, torch.cat([refs[:1], refs[:1] + 0.005]))
    assert sorted(two.tolist()) == [0, 1]


def test_anchors_need_a_candidate_per_reference():
    with pytest.raises(ConfigError, match="raise anchor_candidates"):
        adapt(tiny_model(16), random_images(5, 16), tiny_adapt(anchor_weight=1.0, anchor_candidates=4), seed=0)


def test_anchor_loss_draws_each_reference_from_its_anchor():
    """The anchored samples move towards their references; without the loss they do not."""
    model, refs = tiny_model(16), random_images(4, 16)
    cfg = tiny_adapt(steps=30, lr_g=0.01, lr_d=0.01, anchor_candidates=16)
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(16, model.config.generator.z_dim, generator=gen)
    with torch.no_grad():
        z_anchor = z[losses.match_anchors(model.G(z), refs * 2 - 1)]

    def error(weight):
        out = adapt(model, refs, dataclasses.replace(cfg, anchor_weight=weight), seed=5).model
        with torch.no_grad():
            return float(losses.anchor_l1(out.G(z_anchor), refs * 2 - 1))

    assert error(20.0) < 0.85 * error(0.0)  # random-noise references: a tiny G fits them only part way
