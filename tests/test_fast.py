"""Every fast configuration of the one loop and the one sampler against the reference configuration
(meta_core/fastpath.py).

Tolerances (images in 0..1, parameters as stored):
- foreach Adam, and the fast adaptation loop without channels_last on the CPU: bit-exact (same ops, same order).
- fp32 fast paths (channels_last, windowed checks, CUDA graphs, vmap over tasks): parameters within
  atol 1e-4 + rtol 1e-3 of the reference after a few steps at lr 0.01, images max |diff| <= 1e-3;
  sampling max |diff| <= 1e-4. On CUDA TF32 is switched off for these comparisons.
- bf16 sampling (`bf16_sample`): mean |diff| <= 5e-3 and max |diff| <= 0.1.
- bf16 adaptation (`bf16_train`, off by default): mean image |diff| <= 0.03 and at most a quarter of the
  mean change adaptation itself makes (measured 5-10 %).
Tests run on `--device` (cpu by default); CUDA-graph tests skip on the CPU.
"""
import pytest
import torch

from meta_core import ConfigError, TrainingDivergedError, adapt, losses, sample
from meta_core.config import AugmentConfig, LossConfig
from meta_core.fastpath import CPU_CHECK_EVERY, FastPath, native_bf16_cpu
from meta_core.loop import GANStep, InnerLoop, StepProgress, draw_step_noise
from meta_core.meta import MetaTrainer
from meta_core.sampling import Sampler
from tests.helpers import params_equal, random_images, tiny_adapt, tiny_model
from tests.test_meta import meta_cfg, toy_tasks

PARAM_ATOL, PARAM_RTOL = 1e-4, 1e-3
IMAGE_MAX = 1e-3
SAMPLE_MAX = 1e-4
BF16_SAMPLE_MEAN, BF16_SAMPLE_MAX = 5e-3, 0.1
BF16_ADAPT_MEAN, BF16_ADAPT_RATIO = 0.03, 0.25

# Fast-path variants that stay in fp32 (CUDA graphs only where there is CUDA).
FP32_VARIANTS = {
    "auto": dict(),
    "no_channels_last": dict(channels_last=False),
    "plain_adam_window3": dict(foreach=False, check_every=3),
}


@pytest.fixture
def fp32(device):
    """No TF32 and only deterministic cuDNN kernels on CUDA while comparing fp32 paths: TF32 rounding, or a
    weight-gradient kernel that sums in a varying order, moves single elements by more than the tolerances
    (Adam turns a rounding difference in a near-zero gradient into a sizeable fraction of a step)."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    old = cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark
    cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark = old


def fp32_fast(device, **changes) -> FastPath:
    return FastPath(bf16_sample=False, bf16_train=False, **changes)


def assert_params_close(a, b, atol=PARAM_ATOL, rtol=PARAM_RTOL):
    for (name, p), (_, q) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        torch.testing.assert_close(p.cpu(), q.cpu(), atol=atol, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}")


def image_diff(a, b, seed=11, count=8):
    return (sample(a, seed, count) - sample(b, seed, count)).abs()


# --- options ---------------------------------------------------------------------------------------------

def test_options_resolve_per_device_and_refuse_cuda_only_ones_elsewhere():
    cpu = FastPath().resolve("cpu")
    assert (cpu.channels_last, cpu.foreach, cpu.bf16_sample, cpu.bf16_train, cpu.cuda_graph, cpu.vmap_tasks,
            cpu.check_every) == (True, True, False, native_bf16_cpu(), False, False, CPU_CHECK_EVERY)
    cuda = FastPath().resolve("cuda")
    assert (cuda.bf16_sample, cuda.bf16_train, cuda.cuda_graph, cuda.vmap_tasks, cuda.check_every) == \
        (True, False, True, True, None)
    assert FastPath(bf16_sample=True, vmap_tasks=True).resolve("cpu").bf16_sample  # allowed: CPU autocast
    with pytest.raises(ConfigError, match="cuda_graph=True needs a CUDA device"):
        FastPath(cuda_graph=True).resolve("cpu")
    with pytest.raises(ConfigError, match="check_every"):
        FastPath(check_every=0)
    assert "channels_last+foreach" in cpu.describe()
    ref = FastPath.reference().resolve("cuda")
    assert not any((ref.channels_last, ref.foreach, ref.bf16_sample, ref.bf16_train, ref.cuda_graph, ref.vmap_tasks))
    assert ref.check_every == 1


@pytest.mark.parametrize("flags, native", [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
                                           ("fpu avx2 avx512f avx512bw", False)])
def test_native_bf16_reads_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some cpu\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert native_bf16_cpu(str(cpuinfo)) is native
    assert native_bf16_cpu(str(tmp_path / "missing")) is False  # not Linux: fp32


# --- adaptation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["full", "freeze_d", "modulation"])
def test_fast_adaptation_without_channels_last_is_exact_on_cpu(strategy):
    model, refs = tiny_model(16), random_images(5, 16)
    cfg = tiny_adapt(steps=5, strategy=strategy, lr_g=0.01, lr_d=0.01)
    ref = adapt(model, refs, cfg, seed=7)
    fast = adapt(model, refs, cfg, seed=7, fast=FastPath(channels_last=False, bf16_train=False, check_every=2))
    assert params_equal(ref.model.g_params(), fast.model.g_params())
    assert params_equal(ref.model.d_params(), fast.model.d_params())
    assert ref.stats.d_loss == fast.stats.d_loss and ref.stats.g_loss == fast.stats.g_loss
    assert ref.stats.r1 == fast.stats.r1 and fast.stats.steps == 5


@pytest.mark.parametrize("variant", sorted(FP32_VARIANTS))
@pytest.mark.parametrize("strategy, ema, cdc, anchor", [("full", 0.0, 0.0, 0.0), ("modulation", 0.0, 0.0, 0.0),
                                                        ("full", 3.0, 0.0, 0.0), ("full", 0.0, 50.0, 0.0),
                                                        ("full", 0.0, 0.0, 3.0)])
def test_fast_adaptation_matches_reference(device, fp32, variant, strategy, ema, cdc, anchor):
    model, refs = tiny_model(16, device=device), random_images(5, 16)
    cfg = tiny_adapt(steps=6, strategy=strategy, lr_g=0.01, lr_d=0.01, ema_half_life=ema, cdc_weight=cdc,
                     anchor_weight=anchor, anchor_candidates=8)
    ref = adapt(model, refs, cfg, seed=3)
    fast = adapt(model, refs, cfg, seed=3, fast=fp32_fast(device, **FP32_VARIANTS[variant]))
    assert_params_close(ref.model, fast.model)
    assert float(image_diff(ref.model, fast.model).max()) <= IMAGE_MAX
    assert fast.stats.steps == 6 and fast.stats.rollbacks == 0
    torch.testing.assert_close(torch.tensor(fast.stats.d_loss), torch.tensor(ref.stats.d_loss), atol=1e-4, rtol=1e-3)
    for name, p in fast.model.G.named_parameters():
        assert p.is_contiguous(), name  # the caller gets the ordinary layout back


def test_fast_adaptation_leaves_the_model_and_the_reference_path_alone(device):
    model, refs = tiny_model(16, device=device), random_images(4, 16)
    before_hash, before_images = model.content_hash(), sample(model, 2, 4)
    reference = adapt(model, refs, tiny_adapt(), seed=1).model
    adapt(model, refs, tiny_adapt(), seed=1, fast=FastPath())
    Sampler(model, FastPath()).sample(2, 4)
    assert model.content_hash() == before_hash
    assert torch.equal(sample(model, 2, 4), before_images)
    again = adapt(model, refs, tiny_adapt(), seed=1).model
    if device.type == "cpu":
        assert again.content_hash() == reference.content_hash()
    else:  # cuDNN backward kernels are not bit-deterministic from run to run
        assert_params_close(again, reference)


def poison_step(monkeypatch, model, refs, cfg, seed, bad_steps):
    """Make the G loss non-finite at the given steps of the run drawing from `seed`, as a function of that
    step's noise (so a re-run of the step is non-finite again, as a real divergence would be, it works inside
    a CUDA graph, and in a stacked run it poisons only the task whose noise it is)."""
    gen = torch.Generator().manual_seed(seed)
    gcfg = model.config.generator
    z_bad = [draw_step_noise(gen, refs.shape[0], cfg.batch_size, gcfg.z_dim, gcfg.resolution,
                             cfg.augment.probability).z_g for _ in range(cfg.steps)]
    z_bad = torch.stack([z_bad[s] for s in bad_steps]).to(model.device)  # [S, B, z]
    original = GANStep.g_grads

    def g_grads(self, g, d, noise, names, device, source=None, anchors=None):
        grads, loss = original(self, g, d, noise, names, device, source, anchors)
        hit = (noise.z_g.to(device).unsqueeze(-3) == z_bad).flatten(-2).all(dim=-1).any(dim=-1)  # [] or [T]
        poison = torch.where(hit, torch.full((), float("nan"), device=device), torch.ones((), device=device))
        return grads, loss * poison

    monkeypatch.setattr(GANStep, "g_grads", g_grads)


@pytest.mark.parametrize("check_every", [1, 2, 12])
def test_fast_rollback_matches_reference(device, fp32, monkeypatch, check_every):
    """Windowed checks roll back exactly the steps the per-step rule does. Compared bit for bit on the CPU
    (channels_last off: same ops, same order): twelve GAN steps with rollbacks turn a 1e-7 rounding difference
    into ~1e-2 on some CPUs (measured on an AMD EPYC: the first Adam step is a sign function, and a weight whose
    gradient rounds near zero takes a full step either way), so a tolerance could not tell a bug from rounding."""
    model, refs = tiny_model(16, device=device), random_images(4, 16)
    cfg = tiny_adapt(steps=12, lr_g=0.01, lr_d=0.01)  # collapse checks every 3 steps: windows of up to 3
    poison_step(monkeypatch, model, refs * 2 - 1, cfg, 5, bad_steps=[1, 4])
    ref = adapt(model, refs, cfg, seed=5)
    exact = device.type == "cpu"
    fast = adapt(model, refs, cfg, seed=5, fast=fp32_fast(device, check_every=check_every, channels_last=not exact))
    assert ref.stats.rollbacks == fast.stats.rollbacks == 2
    if exact:
        assert fast.model.content_hash() == ref.model.content_hash()
    else:
        assert_params_close(ref.model, fast.model)
    assert [x != x for x in ref.stats.g_loss] == [x != x for x in fast.stats.g_loss]


def test_fast_path_gives_up_like_the_reference(device, monkeypatch):
    model, refs = tiny_model(16, device=device), random_images(2, 16)
    cfg = tiny_adapt(steps=8, max_rollbacks=2)
    poison_step(monkeypatch, model, refs * 2 - 1, cfg, 0, bad_steps=[2, 3, 4, 5])
    with pytest.raises(TrainingDivergedError) as ref:
        adapt(model, refs, cfg, seed=0)
    with pytest.raises(TrainingDivergedError) as fast:
        adapt(model, refs, cfg, seed=0, fast=FastPath(check_every=4))
    message = str(fast.value)
    assert str(ref.value) == message and "3 steps in a row" in message and "at step 5" in message


def test_fast_path_stops_on_a_collapsed_generator(device):
    model = tiny_model(16, device=device)
    with torch.no_grad():
        for name, p in model.G.named_parameters():
            if ".torgb." in name:
                p.zero_()
    with pytest.raises(TrainingDivergedError, match="collapsed at step 1"):
        adapt(model, random_images(2, 16), tiny_adapt(steps=4, lr_g=0.0, lr_d=0.0), seed=0, fast=FastPath())


def test_fast_on_step_sees_every_step_and_can_cancel(device):
    model = tiny_model(16, device=device)
    before = model.content_hash()
    seen = []

    class Cancelled(Exception):
        pass

    def on_step(p: StepProgress):
        seen.append((p.step, p.total))
        assert p.rollbacks == 0 and p.aug_probability == tiny_adapt().augment.probability
        assert p.preview(torch.randn(2, 16)).shape == (2, 3, 16, 16)
        if p.step == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        adapt(model, random_images(3, 16), tiny_adapt(steps=8), seed=0, on_step=on_step,
              fast=FastPath(check_every=2))
    assert seen == [(1, 8), (2, 8), (3, 8)]
    assert model.content_hash() == before


def test_fast_adaptive_augmentation_matches_reference(device, fp32):
    model, refs = tiny_model(16, device=device), random_images(3, 16)
    cfg = tiny_adapt(steps=4, augment=AugmentConfig(probability=0.5, adaptive=True, speed=0.1))
    ref = adapt(model, refs, cfg, seed=0)
    fast = adapt(model, refs, cfg, seed=0, fast=fp32_fast(device))
    assert fast.stats.aug_probability == ref.stats.aug_probability != 0.5
    assert_params_close(ref.model, fast.model)


def test_fast_adaptation_under_inference_mode(device, fp32):
    refs = random_images(3, 16)
    normal = adapt(tiny_model(16, device=device), refs, tiny_adapt(), seed=2, fast=FastPath())
    with torch.inference_mode():
        inside = adapt(tiny_model(16, device=device), refs, tiny_adapt(), seed=2, fast=FastPath())
    assert_params_close(normal.model, inside.model)


def test_bf16_adaptation_within_its_tolerance(device):
    model, refs = tiny_model(16, device=device), random_images(5, 16)
    cfg = tiny_adapt(steps=4, lr_g=0.01, lr_d=0.01)
    ref = adapt(model, refs, cfg, seed=3).model
    fast = adapt(model, refs, cfg, seed=3, fast=FastPath(bf16_train=True)).model
    diff = float(image_diff(ref, fast).mean())
    change = float(image_diff(ref, model).mean())
    assert diff <= BF16_ADAPT_MEAN and diff <= BF16_ADAPT_RATIO * change, (diff, change)


# --- CUDA graphs -------------------------------------------------------------------------------------------

def cuda_only(device):
    if device.type != "cuda":
        pytest.skip("CUDA graphs need --device cuda")


def test_cuda_graph_adaptation_matches_eager_fast_path(device, fp32):
    cuda_only(device)
    model, refs = tiny_model(16, device=device), random_images(5, 16)
    cfg = tiny_adapt(steps=9, lr_g=0.01, lr_d=0.01, loss=LossConfig(r1_interval=3))  # graphs with and without R1
    eager = adapt(model, refs, cfg, seed=4, fast=fp32_fast(device, cuda_graph=False)).model
    graph = adapt(model, refs, cfg, seed=4, fast=fp32_fast(device, cuda_graph=True))
    assert graph.stats.steps == 9
    assert_params_close(eager, graph.model, atol=1e-5, rtol=1e-4)
    ref = adapt(model, refs, cfg, seed=4).model
    assert float(image_diff(ref, graph.model).max()) <= IMAGE_MAX


def test_cuda_graph_loop_captures_two_graphs_and_replays_them(device, monkeypatch):
    cuda_only(device)
    model = tiny_model(16, device=device)
    cfg = tiny_adapt(steps=8, loss=LossConfig(r1_interval=4))
    captured = []
    original = InnerLoop._launch

    def launch(self, st, step):
        original(self, st, step)
        captured.append(len(st.graphs))

    monkeypatch.setattr(InnerLoop, "_launch", launch)
    real = random_images(4, 16).to(device) * 2 - 1
    InnerLoop(model, cfg, FastPath()).run(model.g_params(), model.d_params(), real, torch.Generator().manual_seed(0))
    assert captured == [0, 0, 1, 1, 2, 2, 2, 2]  # R1 at 0 and 4: warm-ups at 0 and 1, captures at 2 and 4


# --- sampling ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [dict(), dict(channels_last=False), dict(cuda_graph=False)])
def test_fast_sampler_matches_reference(device, fp32, variant):
    if device.type != "cuda" and variant.get("cuda_graph") is False:
        pytest.skip("same as the default on the CPU")
    model = tiny_model(16, device=device)
    sampler = Sampler(model, fp32_fast(device, **variant))
    ref = sample(model, 9, 12)
    for _ in range(3):  # first call warms up / captures, later calls replay
        got = sampler.sample(9, 12, chunk_size=5)
        assert got.shape == ref.shape and got.device.type == "cpu"
        assert float((got - ref).abs().max()) <= SAMPLE_MAX
    assert float((sampler.sample(9, 2, start=10) - ref[10:]).abs().max()) <= SAMPLE_MAX
    trunc = sample(model, 3, 6, truncation=0.5)
    assert float((sampler.sample(3, 6, truncation=0.5) - trunc).abs().max()) <= SAMPLE_MAX
    assert float((sample(model, 9, 12, fast=fp32_fast(device, **variant)) - ref).abs().max()) <= SAMPLE_MAX


def test_fast_sampler_reports_chunks_and_can_cancel(device):
    sampler = Sampler(tiny_model(16, device=device))
    seen = []
    sampler.sample(0, 10, chunk_size=4, on_chunk=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 10), (8, 10), (10, 10)]
    with pytest.raises(KeyboardInterrupt):
        sampler.sample(0, 10, chunk_size=4, on_chunk=lambda done, total: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(ConfigError, match="count"):
        sampler.sample(0, 0)


def test_bf16_sampling_within_its_tolerance(device):
    model = tiny_model(32, device=device)
    ref = sample(model, 4, 16)
    got = Sampler(model, FastPath(bf16_sample=True)).sample(4, 16)
    diff = (got - ref).abs()
    assert float(diff.mean()) <= BF16_SAMPLE_MEAN and float(diff.max()) <= BF16_SAMPLE_MAX


# --- meta-training: vmap over tasks --------------------------------------------------------------------------

@pytest.mark.parametrize("inner", [dict(), dict(loss=LossConfig(r1_interval=1)), dict(strategy="freeze_d"),
                                   dict(ema_half_life=2.0), dict(cdc_weight=50.0),
                                   dict(mirror=True), dict(anchor_weight=3.0, anchor_candidates=8)])
def test_batched_inner_loop_equals_one_task_at_a_time(device, fp32, inner):
    """R1 (double backward) and minibatch-std under vmap; tasks with different numbers of images."""
    model = tiny_model(16, device=device)
    assert model.config.discriminator.mbstd
    cfg = tiny_adapt(steps=3, lr_g=0.01, lr_d=0.01, **inner)
    reals = [random_images(k, 16, seed=k).to(device) * 2 - 1 for k in (3, 5, 4)]
    gens = [torch.Generator().manual_seed(100 + j) for j in range(3)]
    batched = InnerLoop(model, cfg, FastPath(vmap_tasks=True, bf16_train=False)).run_tasks(
        model.g_params(), model.d_params(), reals, gens)
    for j, real in enumerate(reals):
        gen = torch.Generator().manual_seed(100 + j)
        g, d, stats = InnerLoop(model, cfg).run(model.g_params(), model.d_params(), real, gen)
        assert torch.equal(gens[j].get_state(), gen.get_state())  # the same draws from each task's generator
        bg, bd, bstats = batched[j]
        for name in g:
            torch.testing.assert_close(bg[name], g[name], atol=PARAM_ATOL, rtol=PARAM_RTOL, msg=name)
        for name in d:
            torch.testing.assert_close(bd[name], d[name], atol=PARAM_ATOL, rtol=PARAM_RTOL, msg=name)
        torch.testing.assert_close(torch.tensor(bstats.r1), torch.tensor(stats.r1), atol=1e-4, rtol=1e-3)
        assert bstats.steps == stats.steps and bstats.rollbacks == stats.rollbacks == 0


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
@pytest.mark.parametrize("vmap_tasks", [True, False])
def test_fast_meta_step_matches_reference(device, fp32, algorithm, vmap_tasks):
    cfg = meta_cfg(algorithm, steps=2, meta_batch=3)
    ref = MetaTrainer(tiny_model(16, device=device), toy_tasks(), cfg).run()
    fast = MetaTrainer(tiny_model(16, device=device), toy_tasks(), cfg,
                       fast=fp32_fast(device, vmap_tasks=vmap_tasks)).run()
    assert_params_close(ref, fast)
    assert fast.meta_step == ref.meta_step == 2


def test_batched_meta_step_with_every_task_diverging_raises(monkeypatch):
    monkeypatch.setattr(losses, "d_loss", lambda real, fake: (real.mean(-1) + fake.mean(-1)) * float("nan"))
    cfg = meta_cfg(steps=1, inner=tiny_adapt(steps=3, max_rollbacks=1))
    with pytest.raises(TrainingDivergedError, match="every task diverged"):
        MetaTrainer(tiny_model(16), toy_tasks(), cfg, fast=FastPath(vmap_tasks=True)).run()


@pytest.mark.parametrize("check_every", [1, 3])
def test_stacked_tasks_roll_back_one_task_and_keep_the_others(device, fp32, monkeypatch, check_every):
    """A task whose steps go non-finite rolls back alone: the other tasks' weights are bit for bit those of the
    same stacked run without the bad steps, and the bad task drops the steps the per-step rule drops when it
    runs alone. (Stacked and one-by-one arithmetic differ in rounding, which twelve steps with rollbacks
    amplify past any tolerance on some CPUs: see test_fast_rollback_matches_reference. That stacked runs
    equal one-by-one ones is tested over fewer steps above.)"""
    model = tiny_model(16, device=device)
    cfg = tiny_adapt(steps=12, lr_g=0.01, lr_d=0.01)  # collapse checks every 3 steps: windows of up to 3
    reals = [random_images(k, 16, seed=k).to(device) * 2 - 1 for k in (3, 4, 5)]
    fast = FastPath(vmap_tasks=True, bf16_train=False, check_every=check_every)

    def stacked():
        gens = [torch.Generator().manual_seed(200 + j) for j in range(3)]
        return InnerLoop(model, cfg, fast).run_tasks(model.g_params(), model.d_params(), reals, gens)

    clean = stacked()
    poison_step(monkeypatch, model, reals[1], cfg, 201, bad_steps=[1, 4])
    batched = stacked()
    for j in (0, 2):
        assert batched[j][2].rollbacks == 0
        assert params_equal(batched[j][0], clean[j][0]) and params_equal(batched[j][1], clean[j][1])
    alone = torch.Generator().manual_seed(201)
    *_, stats = InnerLoop(model, cfg).run(model.g_params(), model.d_params(), reals[1], alone)
    bg, bd, bstats = batched[1]
    assert bstats.rollbacks == stats.rollbacks == 2
    assert [x != x for x in bstats.g_loss] == [x != x for x in stats.g_loss]
    assert all(bool(t.isfinite().all()) for t in (*bg.values(), *bd.values()))
    assert not params_equal(bg, clean[1][0])  # its dropped steps changed its course


def test_a_stacked_task_that_diverges_comes_back_as_its_error(monkeypatch):
    model = tiny_model(16)
    cfg = tiny_adapt(steps=6, max_rollbacks=1)
    reals = [random_images(k, 16, seed=k) * 2 - 1 for k in (3, 4)]
    poison_step(monkeypatch, model, reals[0], cfg, 300, bad_steps=[2, 3, 4])
    gens = [torch.Generator().manual_seed(300 + j) for j in range(2)]
    out = InnerLoop(model, cfg, FastPath(vmap_tasks=True)).run_tasks(model.g_params(), model.d_params(), reals, gens)
    assert isinstance(out[0], TrainingDivergedError)
    assert "2 steps in a row" in str(out[0]) and "at step 4" in str(out[0])
    assert out[1][2].steps == 6 and out[1][2].rollbacks == 0
