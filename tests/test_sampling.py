import pytest
import torch

from meta_core import interpolate, latents, sample
from meta_core.errors import ConfigError
from meta_core.sampling import slerp
from meta_core.seeding import LATENT_BLOCK
from tests.helpers import tiny_dcgan, tiny_model


def test_same_seed_same_images_different_seed_differs(device):
    model = tiny_model(16, device=device)
    a, b, c = sample(model, 1, 4), sample(model, 1, 4), sample(model, 2, 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (4, 3, 16, 16) and a.device.type == "cpu"
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_latents_do_not_depend_on_count_start_or_block_boundaries():
    big = latents(123, 0, 2 * LATENT_BLOCK + 5, 16)
    assert torch.equal(latents(123, 0, 3, 16), big[:3])
    assert torch.equal(latents(123, LATENT_BLOCK - 2, 4, 16), big[LATENT_BLOCK - 2:LATENT_BLOCK + 2])
    assert not torch.equal(latents(124, 0, 3, 16), big[:3])


def test_latents_ignore_the_global_rng():
    torch.manual_seed(0)
    a = latents(5, 0, 4, 16)
    torch.manual_seed(1)
    torch.rand(10)
    assert torch.equal(a, latents(5, 0, 4, 16))


def test_image_i_does_not_depend_on_count_or_chunk(device):
    model = tiny_model(16, device=device)
    ref = sample(model, 9, 12)
    torch.testing.assert_close(sample(model, 9, 3), ref[:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(sample(model, 9, 12, chunk_size=5), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(sample(model, 9, 2, start=10), ref[10:], atol=1e-5, rtol=0)


def test_chunks_report_progress_and_can_cancel():
    model = tiny_model(16)
    seen = []
    sample(model, 0, 10, chunk_size=4, on_chunk=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 10), (8, 10), (10, 10)]

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample(model, 0, 10, chunk_size=4, on_chunk=cancel)


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_truncation_pulls_towards_the_average(arch):
    model = tiny_model(16) if arch == "stylegan2" else tiny_dcgan()
    full = sample(model, 3, 8, truncation=1.0)
    zero = sample(model, 3, 8, truncation=0.0)
    assert float(zero.std(dim=0).mean()) < 1e-5  # every image is the average image
    half = sample(model, 3, 8, truncation=0.5)
    # halfway there, visibly: a dcgan's normalised z was once its w, and truncating it changed ~0.2 % of a pixel
    assert float((half - zero[:1]).abs().mean()) < 0.8 * float((full - zero[:1]).abs().mean())


def test_a_dcgan_draws_the_same_images_through_its_w():
    model = tiny_dcgan(seed=2)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.G(z), model.G.synthesis(model.G.mapping(z)))
        assert model.G.mapping(z).shape == (4, model.config.generator.channels(4) * 16)


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1, "count": 1}, "seed"), ({"seed": 2 ** 64, "count": 1}, "seed"),
    ({"seed": 0, "count": 0}, "count"), ({"seed": 0, "count": 1, "truncation": 3.0}, "truncation"),
    ({"seed": 0, "count": 1, "truncation": float("nan")}, "truncation"),
])
def test_bad_sampling_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sample(tiny_model(16), **kwargs)


def test_largest_seed_is_accepted():
    assert sample(tiny_model(16), 2 ** 64 - 1, 1).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolation_endpoints_are_the_seeds_first_images(space):
    model = tiny_model(16)
    frames = interpolate(model, 4, 5, 6, space=space)
    assert frames.shape == (6, 3, 16, 16)
    torch.testing.assert_close(frames[0], sample(model, 4, 1)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(frames[-1], sample(model, 5, 1)[0], atol=1e-5, rtol=0)
    steps = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))
    assert float(steps.max()) < float((frames[-1] - frames[0]).abs().mean())  # gradual, not a jump


def test_slerp_keeps_norm_between_unit_vectors():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    out = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    with pytest.raises(ConfigError):
        interpolate(tiny_model(16), 0, 1, 1)


def test_a_count_beyond_the_memory_bound_is_refused_before_allocating():
    with pytest.raises(ConfigError, match="per call"):
        sample(tiny_model(16), 0, 10 ** 9)
