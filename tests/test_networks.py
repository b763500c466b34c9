import pytest
import torch
from torch.func import functional_call, vmap

from meta_core import ModelConfig
from meta_core.config import RESOLUTIONS
from meta_core.errors import ConfigError
from tests.helpers import tiny_model


@pytest.mark.parametrize("resolution", [r for r in RESOLUTIONS if r >= 16])
def test_shapes_and_ranges_at_every_resolution(resolution, device):
    model = tiny_model(resolution, device=device)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        img = model.G(z)
        logits = model.D(img)
    assert img.shape == (2, 3, resolution, resolution)
    assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0
    assert logits.shape == (2,)
    assert bool(torch.isfinite(logits).all())


def test_no_buffers_or_running_statistics():
    model = tiny_model(16)
    assert list(model.G.buffers()) == [] and list(model.D.buffers()) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in model.G.modules())


def test_modulation_set_is_small_and_only_styles_and_biases():
    model = tiny_model(32)
    names = model.G.modulation_parameter_names()
    assert names and all(".affine." in n or n.endswith(".bias") for n in names)
    assert not any(n.startswith("mapping.") for n in names)
    summary = model.parameter_summary()
    assert summary["modulation"] < 0.2 * summary["generator"]


def test_freeze_d_freezes_a_prefix_from_the_input_side():
    model = tiny_model(32)
    assert model.D.frozen_parameter_names(0) == []
    one = model.D.frozen_parameter_names(1)
    assert set(n.split(".")[0] for n in one) == {"fromrgb", "blocks"}
    assert all(n.startswith(("fromrgb.", "blocks.0.")) for n in one)
    everything = model.D.frozen_parameter_names(99)
    assert not any(n.startswith(("conv.", "fc.", "out.")) for n in everything)  # the head always trains


def test_functional_call_batched_over_tasks_with_vmap():
    model = tiny_model(16)
    params = {k: torch.stack([v, v * 1.01]) for k, v in model.g_params().items()}
    z = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1))
    out = vmap(lambda p, zz: functional_call(model.G, p, (zz,)))(params, z)
    assert out.shape == (2, 3, 3, 16, 16)
    with torch.no_grad():
        single = functional_call(model.G, {k: v[0] for k, v in params.items()}, (z[0],))
    torch.testing.assert_close(out[0], single, atol=1e-5, rtol=1e-5)


def test_mismatched_resolutions_are_rejected():
    from meta_core.config import DiscriminatorConfig, GeneratorConfig
    with pytest.raises(ConfigError, match="build both for the same resolution"):
        ModelConfig(GeneratorConfig(resolution=32), DiscriminatorConfig(resolution=64))
    with pytest.raises(ConfigError, match="not supported"):
        ModelConfig.for_resolution(48)


def test_create_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = tiny_model(16, seed=1), tiny_model(16, seed=1), tiny_model(16, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.content_hash() == b.content_hash() != c.content_hash()


# --- the dcgan family ----------------------------------------------------------------------------------------

def tiny_dcgan(resolution: int = 16):
    from meta_core import MetaGAN
    return MetaGAN.create(ModelConfig.for_resolution(resolution, channel_base=8 * resolution, channel_max=32,
                                                     z_dim=16, arch="dcgan"))


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_dcgan_shapes_ranges_and_no_state(resolution, device):
    model = tiny_dcgan(resolution).to(device)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        img = model.G(z)
        logits = model.D(img)
    assert img.shape == (3, 3, resolution, resolution) and float(img.abs().max()) <= 1.0
    assert logits.shape == (3,) and bool(torch.isfinite(logits).all())
    assert list(model.G.buffers()) == [] and list(model.D.buffers()) == []


def test_a_dcgan_sample_does_not_depend_on_its_batch():
    model = tiny_dcgan(16)
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.G(z[:2]), model.G(z)[:2], atol=1e-6, rtol=1e-5)


def test_dcgan_modulation_and_freeze_d_sets():
    model = tiny_dcgan(32)
    names = model.G.modulation_parameter_names()
    assert names and all(n.endswith(("gain", "bias")) for n in names)
    summary = model.parameter_summary()
    assert 0 < summary["modulation"] < 0.05 * summary["generator"]
    assert model.D.frozen_parameter_names(0) == []
    assert model.D.frozen_parameter_names(1) == ["blocks.0.weight", "blocks.0.bias"]
    assert not any(n.startswith(("out.", f"blocks.{len(model.D.blocks) - 1}."))
                   for n in model.D.frozen_parameter_names(99))  # the last block and the head always train


def test_dcgan_under_vmap_equals_one_task():
    model = tiny_dcgan(16)
    params = {k: torch.stack([v, v * 1.01]) for k, v in model.d_params().items()}
    x = torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = vmap(lambda p, xx: functional_call(model.D, p, (xx,)))(params, x)
    with torch.no_grad():
        single = functional_call(model.D, {k: v[1] for k, v in params.items()}, (x[1],))
    torch.testing.assert_close(out[1], single, atol=1e-5, rtol=1e-5)


def test_configs_without_an_arch_are_the_stylegan2_family():
    from meta_core.config import GeneratorConfig, from_dict
    assert from_dict(GeneratorConfig, {"resolution": 32}).arch == "stylegan2"
    with pytest.raises(ConfigError, match="unknown generator arch"):
        GeneratorConfig(arch="vit")
    with pytest.raises(ConfigError, match="w_dim = z_dim"):
        GeneratorConfig(arch="dcgan", z_dim=16, w_dim=32)
