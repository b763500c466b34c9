"""The spectrally normalised dcgan discriminator (the textbook transfer baseline's D)."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from meta_core import ModelConfig, checkpoint
from meta_core.config import DiscriminatorConfig
from meta_core.errors import ConfigError
from meta_core.loop import InnerLoop
from meta_core.model import MetaGAN
from meta_core.networks import spectral_normalised
from tests.helpers import random_images, tiny_adapt, tiny_dcgan, write_task_folder

ROOT = Path(__file__).resolve().parents[1]


def sn_dcgan(seed: int = 0) -> MetaGAN:
    cfg = ModelConfig.for_resolution(16, channel_base=128, channel_max=16, z_dim=16, arch="dcgan")
    return MetaGAN.create(ModelConfig(cfg.generator, dataclasses.replace(cfg.discriminator, spectral_norm=True)),
                          seed=seed)


def dominant_weight(device="cpu") -> torch.Tensor:
    """A trained conv's spectrum: one direction stands out of the noise."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(32, 128, generator=g) * 0.02
            + 0.3 * torch.randn(32, 1, generator=g) @ torch.randn(1, 128, generator=g) / 128 ** 0.5
            ).reshape(32, 8, 4, 4).to(device)


def test_the_normalised_weight_has_unit_spectral_norm(device):
    weight = dominant_weight(device)
    normalised = spectral_normalised(weight)
    assert float(torch.linalg.matrix_norm(normalised.flatten(1).cpu(), ord=2)) == pytest.approx(1.0, abs=1e-3)
    ratio = normalised / weight  # one scalar for the whole tensor
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.flatten()[0])))


def test_it_is_a_pure_function_whose_gradient_holds_the_singular_vectors_constant():
    weight = dominant_weight().requires_grad_(True)
    a, b = spectral_normalised(weight), spectral_normalised(weight)
    assert torch.equal(a, b)  # no state carried between calls
    (grad,) = torch.autograd.grad((a * a.detach().sin()).sum(), weight)
    u, _, vh = torch.linalg.svd(weight.detach().flatten(1))
    exact = weight / (u[:, 0] @ weight.flatten(1) @ vh[0])  # sigma = u^T W v, u and v constants (Miyato 2018)
    (expected,) = torch.autograd.grad((exact * a.detach().sin()).sum(), weight)
    torch.testing.assert_close(grad, expected, rtol=1e-3, atol=1e-5)


def test_the_discriminator_equals_one_with_normalised_weights_and_no_spectral_norm():
    model = sn_dcgan()
    plain = MetaGAN.create(ModelConfig(model.config.generator,
                                       dataclasses.replace(model.config.discriminator, spectral_norm=False)))
    weights = {n: spectral_normalised(p) if p.dim() == 4 else p for n, p in model.d_params().items()}
    img = random_images(4, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.D(img), functional_call(plain.D, weights, (img,)))
        unnormalised = functional_call(plain.D, model.d_params(), (img,))
    assert not torch.allclose(model.D(img), unnormalised)  # the flag changes what D computes


def test_only_the_dcgan_discriminator_has_it():
    with pytest.raises(ConfigError, match="dcgan"):
        DiscriminatorConfig(resolution=16, arch="stylegan2", spectral_norm=True)


def test_a_checkpoint_keeps_it_and_gives_bit_identical_logits(tmp_path):
    model = sn_dcgan(seed=3)
    checkpoint.save(model, tmp_path / "sn.safetensors")
    loaded = checkpoint.load(tmp_path / "sn.safetensors")
    assert loaded.config.discriminator.spectral_norm
    img = random_images(3, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.D(img), model.D(img))


def test_adaptation_runs_on_it_and_is_deterministic():
    model = sn_dcgan(seed=1)
    cfg = tiny_adapt(steps=3, strategy="freeze_d")
    real = random_images(4, 16) * 2 - 1
    runs = [InnerLoop(model, cfg).run(model.g_params(), model.d_params(), real, torch.Generator().manual_seed(7))
            for _ in range(2)]
    for n in runs[0][0]:
        assert torch.equal(runs[0][0][n], runs[1][0][n])
    assert any(not torch.equal(runs[0][1][n], model.d_params()[n]) for n in runs[0][1])


def test_pretrain_cli_trains_a_spectral_norm_d_under_a_committed_generator(tmp_path):
    tasks = write_task_folder(tmp_path / "tasks", tasks=2, per_task=4, size=16)
    checkpoint.save(tiny_dcgan(seed=4), tmp_path / "g.safetensors")
    out = tmp_path / "p.safetensors"
    proc = subprocess.run([sys.executable, "-m", "meta_core", "pretrain", "--tasks", str(tasks), "--out", str(out),
                           "--init-g", str(tmp_path / "g.safetensors"), "--arch", "dcgan", "--d-spectral-norm",
                           "--channel-base", "128", "--channel-max", "16", "--r1-gamma", "0",
                           "--steps", "2", "--batch-size", "4", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trained = checkpoint.load(out)
    assert trained.config.discriminator.spectral_norm and trained.config.discriminator.arch == "dcgan"
    assert trained.provenance["pretrained"]["steps"] == 2


def test_pretrain_init_g_builds_a_discriminator_as_wide_as_that_generator(tmp_path):
    """Without --d-channel-*, D follows the committed G's widths, not the CLI's defaults for a new model."""
    tasks = write_task_folder(tmp_path / "tasks", tasks=2, per_task=4, size=16)
    source = MetaGAN.create(ModelConfig.for_resolution(16, channel_base=64, channel_max=8, z_dim=16, arch="dcgan"),
                            seed=4)
    checkpoint.save(source, tmp_path / "g.safetensors")
    out = tmp_path / "p.safetensors"
    proc = subprocess.run([sys.executable, "-m", "meta_core", "pretrain", "--tasks", str(tasks), "--out", str(out),
                           "--init-g", str(tmp_path / "g.safetensors"), "--arch", "dcgan", "--r1-gamma", "0",
                           "--steps", "1", "--batch-size", "4", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    d_cfg = checkpoint.load(out).config.discriminator
    assert (d_cfg.channel_base, d_cfg.channel_max) == (64, 8)
