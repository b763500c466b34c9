"""The quality benchmark end to end on tiny models and data (a smoke test of the pipeline, not of quality)."""
import dataclasses
import json

import pytest
import torch

from meta_core import AdaptConfig, MetaGAN, ModelConfig, checkpoint
from meta_core.app.bench_quality import (gates, main, method_setup, prior_fit, prior_gate, run, stratified_halves,
                                         summarise, unadapted_samples)
from meta_core.config import AugmentConfig, LossConfig
from meta_core.errors import ConfigError
from meta_core.app.evaluator import load_evaluator, train_evaluator
from tests.helpers import tiny_model, trained_styles, write_task_folder


def test_benchmark_runs_every_method_and_writes_its_outputs(tmp_path):
    heldout = write_task_folder(tmp_path / "heldout", tasks=1, per_task=14, size=16)
    ev = tmp_path / "ev.safetensors"
    train_evaluator([str(heldout)], str(ev), epochs=1, batch=8, log=lambda *a: None)
    cfg = AdaptConfig(steps=2, batch_size=4, strategy="full")
    for name, seed in (("meta", 0), ("transfer", 1), ("unlabeled", 2)):
        m = tiny_model(16, seed=seed)
        m.adapt_defaults = cfg
        checkpoint.save(m, tmp_path / f"{name}.safetensors")
    dcgan = MetaGAN.create(ModelConfig.for_resolution(16, channel_base=128, channel_max=32, z_dim=16, arch="dcgan"))
    checkpoint.save(dcgan, tmp_path / "dcgan.safetensors")
    out = tmp_path / "out"
    code = main(["--meta", str(tmp_path / "meta.safetensors"), "--transfer", str(tmp_path / "transfer.safetensors"),
                 "--unlabeled", str(tmp_path / "unlabeled.safetensors"), "--dcgan", str(tmp_path / "dcgan.safetensors"),
                 "--evaluator", str(ev), "--heldout",
                 str(heldout), "--shots", "1,2", "--budgets", "0", "--samples", "12", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert len(result["rows"]) == 1 * 2 * 1 * 5  # styles x shots x budgets x methods
    assert {r["method"] for r in result["rows"]} == {"meta", "transfer", "scratch", "unlabeled", "dcgan"}
    assert all(r["fd"] >= -1e-6 and 0 <= r["precision"] <= 1 for r in result["rows"])
    text = (out / "results.md").read_text()
    assert "meta beats transfer and scratch and dcgan" in text
    assert "### Absolute gates (meta, K=2" not in text and "no meta rows at K=10" in text
    assert (out / "figure.png").stat().st_size > 0


def test_repeats_average_runs_whose_first_is_the_single_run(tmp_path):
    heldout = write_task_folder(tmp_path / "heldout", tasks=1, per_task=14, size=16)
    ev_path = tmp_path / "ev.safetensors"
    train_evaluator([str(heldout)], str(ev_path), epochs=1, batch=8, log=lambda *a: None)
    meta = tiny_model(16)
    meta.adapt_defaults = AdaptConfig(steps=2, batch_size=4, strategy="full")
    ev = load_evaluator(str(ev_path), "cpu")
    kwargs = dict(styles=None, shots=[2], budgets=[2], samples=12, log=lambda *a: None, methods=["meta"])
    once = run({"meta": meta}, ev, str(heldout), **kwargs)["rows"][0]
    twice = run({"meta": meta}, ev, str(heldout), repeats=2, **kwargs)["rows"][0]
    assert twice["fd_runs"][0] == once["fd"] and "fd_runs" not in once
    assert twice["fd_runs"][1] != once["fd"]  # the second run has its own noise
    assert twice["fd"] == pytest.approx(sum(twice["fd_runs"]) / 2)
    with pytest.raises(ConfigError, match="repeats"):
        run({"meta": meta}, ev, str(heldout), repeats=0, **kwargs)


def test_summary_names_only_the_baselines_that_ran():
    def row(method, fd):
        return {"style": "s", "k": 1, "budget": 5, "method": method, "fd": fd, "kid": 0.0}

    base = {"floors": [{"style": "s", "real_halves_fd": 1.0}], "shots": [1], "budgets": [5]}
    alone = summarise(dict(base, rows=[row("meta", 2.0)], methods=["meta"]))
    assert "beats" not in alone
    vs_transfer = summarise(dict(base, rows=[row("meta", 2.0), row("transfer", 3.0)], methods=["meta", "transfer"]))
    assert "meta beats transfer on FD for 1/1 styles" in vs_transfer


def gate_result(fd_ratio: float, precision: float, recall: float, median_ratio: float, styles: int = 8) -> dict:
    rows = [{"style": f"s{i}", "k": 10, "budget": 25, "method": "meta", "fd": fd_ratio * (10 + i),
             "precision": precision, "recall": recall, "median_ratio": median_ratio} for i in range(styles)]
    floors = [{"style": f"s{i}", "real_halves_fd": 1.0, "references_fd_k10": 10.0 + i} for i in range(styles)]
    return {"rows": rows, "floors": floors, "budgets": [25], "shots": [10], "methods": ["meta"]}


def test_gates_pass_only_when_every_target_is_met():
    good = gates(gate_result(0.9, 0.35, 0.25, 1.2))
    assert sum(line.startswith("- PASS") for line in good) == 5
    bad = gates(gate_result(2.5, 0.1, 0.05, 0.8))
    assert sum(line.startswith("- FAIL") for line in bad) == 5
    assert "worst s0: 2.50x" in "\n".join(bad) and "(0.100)" in "\n".join(bad)
    between = gates(gate_result(1.5, 0.35, 0.25, 1.2))  # within 2x everywhere but below on none
    assert [line[:6] for line in between if line.startswith("- ")] == ["- PASS", "- FAIL", "- PASS", "- PASS",
                                                                       "- PASS"]


def test_prior_fit_scores_the_unadapted_model_against_real_halves(tmp_path):
    train = write_task_folder(tmp_path / "train", tasks=2, per_task=20, size=16)
    ev = tmp_path / "ev.safetensors"
    train_evaluator([str(train)], str(ev), epochs=1, batch=8, log=lambda *a: None)
    evaluator = load_evaluator(str(ev))
    fit = prior_fit(tiny_model(16), evaluator, str(train), samples=10)
    assert fit["images"] == 10 and fit["styles"] == ["style0", "style1"]
    assert fit["fd"] > fit["real_halves_fd"] >= 0 and fit["ratio"] == pytest.approx(fit["fd"] / fit["real_halves_fd"])
    assert prior_gate(dict(fit, ratio=10.0)).startswith("- PASS") and prior_gate(dict(fit, ratio=10.5)).startswith(
        "- FAIL")
    assert prior_fit(tiny_model(16), evaluator, str(train), exclude=("style1",), samples=10)["styles"] == ["style0"]
    few = write_task_folder(tmp_path / "few", tasks=1, per_task=6, size=16)
    with pytest.raises(ConfigError, match="at least 20"):
        prior_fit(tiny_model(16), evaluator, str(few))


def test_prior_fit_halves_hold_every_style_equally_and_share_no_image():
    sizes = (30, 7, 12)
    styles = [torch.arange(n) + 1000 * i for i, n in enumerate(sizes)]  # image "ids": style i -> 1000 i + k
    a, b = stratified_halves(styles, 3, torch.Generator().manual_seed(0))
    for half in (a, b):
        assert [int((half // 1000 == i).sum()) for i in range(len(sizes))] == [3, 3, 3]
    assert not set(a.tolist()) & set(b.tolist())
    again = stratified_halves(styles, 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])


def test_transfer_adapts_by_ours_recipe_with_freeze_d():
    ours, pooled = tiny_model(16, seed=0), tiny_model(16, seed=1)
    for aug, expected in ((AugmentConfig(ops=("translation",)), AugmentConfig(ops=("translation",))),
                          (AugmentConfig(ops=()), AugmentConfig()),
                          (AugmentConfig(probability=0.5, adaptive=True), AugmentConfig())):
        ours.adapt_defaults = AdaptConfig(steps=7, lr_g=3e-4, lr_d=5e-4, batch_size=4, strategy="full", augment=aug)
        model, cfg = method_setup("transfer", {"meta": ours, "transfer": pooled}, budget=3, seed=0)
        assert model is pooled
        assert cfg == dataclasses.replace(ours.adapt_defaults, steps=3, strategy="freeze_d", augment=expected)


def test_dcgan_baseline_is_the_textbook_fine_tuning_whatever_the_checkpoint_stores():
    ours = tiny_model(16, seed=0)
    stored = AdaptConfig(steps=7, lr_g=1e-3, lr_d=1e-3, strategy="full", anchor_weight=10.0, ema_half_life=5.0,
                         cdc_weight=2.0, mirror=True, loss=LossConfig(r1_gamma=1.0))
    plain = AdaptConfig(steps=7, lr_g=1e-3, lr_d=1e-3, strategy="full")
    cfgs = []
    for defaults in (stored, plain):
        ours.adapt_defaults = defaults
        model, cfg = method_setup("dcgan", {"meta": ours, "dcgan": ours}, budget=3, seed=0)
        assert model is ours
        cfgs.append(cfg)
    assert cfgs[0] == cfgs[1]
    cfg = cfgs[0]
    assert (cfg.anchor_weight, cfg.ema_half_life, cfg.cdc_weight, cfg.mirror) == (0.0, 0.0, 0.0, False)
    assert (cfg.strategy, cfg.freeze_d_blocks, cfg.lr_g, cfg.loss.r1_gamma) == ("freeze_d", 2, 2e-4, 0.0)
    assert cfg.augment == AugmentConfig() and cfg.steps == 3


def test_a_conditional_model_is_sampled_at_each_training_styles_own_vector():
    model = trained_styles().current_model()
    plain_cfg = ModelConfig(dataclasses.replace(model.config.generator, style_count=0), model.config.discriminator)
    plain = MetaGAN.create(plain_cfg).with_params(model.g_params(), model.d_params())
    assert not hasattr(plain.G, "styles")
    with torch.no_grad():  # every style the stored one: the same stream as a model without styles
        model.G.styles.copy_(model.G.style.expand_as(model.G.styles))
    # (batches of another size: float sums may differ in the last bit)
    torch.testing.assert_close(unadapted_samples(model, 3, 7), unadapted_samples(plain, 3, 7), rtol=0, atol=1e-6)
    with torch.no_grad():
        model.G.styles[1].add_(1.0)
    out = unadapted_samples(model, 3, 7)  # shares of 3, 2, 2: images 3-4 are drawn at style 1
    torch.testing.assert_close(out[:3], unadapted_samples(plain, 3, 7)[:3], rtol=0, atol=1e-6)
    assert not torch.allclose(out[3:5], unadapted_samples(plain, 3, 7)[3:5])
