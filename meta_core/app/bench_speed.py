"""`python -m meta_core bench-speed`: how fast sampling, adaptation and meta-training are, on this device.

For the bundled configuration at each resolution (64 px: the bundled checkpoint when present; 128 px: the
same channel settings with random weights, since speed does not depend on the weights) it measures, in one
process on one device:

- sampling throughput at batch 1, 16 and 1024 (images/s, latents drawn on the CPU to images in 0..1 on the
  CPU, as `sample` returns them) and latency at batch 16;
- a default 10-shot adaptation (the checkpoint's adaptation defaults), from references in memory to an
  adapted model ready to sample: wall time and inner steps/s;
- meta-training (the checkpoint's meta-training settings, synthetic tasks): meta-steps/s and inner G+D steps/s;
- peak memory of each: CUDA `max_memory_allocated`, or on the CPU the process's peak RSS (VmHWM, reset
  through /proc/self/clear_refs before each measurement; it includes what the process held before);

for the reference path, the fast path (`FastPath()`, what helps on this device) and a plain PyTorch
DCGAN-style reference written here (fp32, eager, BatchNorm, ~2.6 M generator parameters at 64 px, Adam,
batch-16 G+D steps), and prints every MetaGAN figure as a ratio to the DCGAN's.

Timing: one warm-up call, then calls until `min_time` seconds or `max_reps` calls; the median is reported.
On the CPU a first call of at least `LONG_CALL` seconds is timed too instead of repeated (warm-up effects
are negligible there and the benchmark would otherwise take long).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import torch
from torch import nn

from ..adaptation import adapt
from ..checkpoint import load
from ..config import AdaptConfig, MetaConfig, ModelConfig
from ..data import TaskSet
from ..fastpath import FastPath, native_bf16_cpu
from ..meta import MetaTrainer
from ..model import MetaGAN
from ..sampling import Sampler, sample
from .common import REPO, cpu_name, resolve_device

BUNDLED = REPO / "checkpoints" / "metagan_64.safetensors"
SAMPLE_BATCHES = (1, 16, 1024)
LONG_CALL = 2.0
DCGAN_Z = 100
DCGAN_WIDTH = 54  # G has ~2.65 M parameters at 64 px with this width
DCGAN_BATCH = 16
REFERENCES = 10


# --- the DCGAN reference ---------------------------------------------------------------------------------

def dcgan_generator(resolution: int, nz: int = DCGAN_Z, width: int = DCGAN_WIDTH) -> nn.Sequential:
    """Radford et al. 2015: z [N, nz, 1, 1] -> transposed convs with BatchNorm + ReLU -> tanh [N, 3, R, R]."""
    channels = [width * 8]
    res = 4
    while res * 2 < resolution:
        channels.append(max(channels[-1] // 2, 8))
        res *= 2
    layers: list[nn.Module] = [nn.ConvTranspose2d(nz, channels[0], 4, 1, 0, bias=False), nn.BatchNorm2d(channels[0]),
                               nn.ReLU(True)]
    for cin, cout in zip(channels, channels[1:]):
        layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_discriminator(resolution: int, width: int = DCGAN_WIDTH) -> nn.Sequential:
    """Strided convs with BatchNorm + LeakyReLU down to 4x4, then a 4x4 conv to one logit."""
    layers: list[nn.Module] = []
    cin, res, cout = 3, resolution, width * 8 // (resolution // 8)
    first = True
    while res > 4:
        cout = max(cout, 8)
        layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=False))
        if not first:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, True))
        cin, cout, res, first = cout, cout * 2, res // 2, False
    layers += [nn.Conv2d(cin, 1, 4, 1, 0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


class DCGAN:
    """The plain reference: eager fp32 PyTorch, `torch.optim.Adam` (its defaults), BCE-with-logits loss."""

    def __init__(self, resolution: int, device: torch.device, seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = dcgan_generator(resolution).to(device)
            self.D = dcgan_discriminator(resolution).to(device)
        self.device = device

    def parameters(self) -> tuple[int, int]:
        return sum(p.numel() for p in self.G.parameters()), sum(p.numel() for p in self.D.parameters())

    @torch.no_grad()
    def sample(self, seed: int, count: int) -> torch.Tensor:
        self.G.eval()
        z = torch.randn(count, DCGAN_Z, 1, 1, generator=torch.Generator().manual_seed(seed))
        return self.G(z.to(self.device)).float().cpu().add_(1).mul_(0.5).clamp_(0, 1)

    def trainer(self, real: torch.Tensor, seed: int = 0) -> tuple[Callable[[], None], nn.Module]:
        """A batch-16 G+D training step over `real` [K, 3, R, R] in [-1, 1] on the device, with its own copies."""
        G, D = copy.deepcopy(self.G).train(), copy.deepcopy(self.D).train()
        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loss = nn.BCEWithLogitsLoss()
        ones = torch.ones(DCGAN_BATCH, 1, device=self.device)
        zeros = torch.zeros(DCGAN_BATCH, 1, device=self.device)
        gen = torch.Generator().manual_seed(seed)

        def step() -> None:
            index = torch.randint(0, real.shape[0], (DCGAN_BATCH,), generator=gen)
            z = torch.randn(DCGAN_BATCH, DCGAN_Z, 1, 1, generator=gen)
            fake = G(z.to(self.device))
            opt_d.zero_grad(set_to_none=True)
            loss_d = loss(D(real[index.to(self.device)]), ones) + loss(D(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            loss_g = loss(D(fake), ones)
            loss_g.backward()
            opt_g.step()

        return step, G

    def finetune(self, references: torch.Tensor, steps: int) -> nn.Module:
        """The DCGAN counterpart of a few-shot adaptation: references (CPU, 0..1) in, a tuned G ready to sample."""
        real = references.to(self.device) * 2 - 1
        step, G = self.trainer(real)
        for _ in range(steps):
            step()
        return G.eval()


# --- measuring -------------------------------------------------------------------------------------------

class PeakMemory:
    """Peak memory of a phase: CUDA max_memory_allocated, or the process's peak RSS on Linux."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.kind = "CUDA max_memory_allocated"
        elif self._clear_refs():
            self.kind = "process peak RSS (VmHWM, reset before each phase; includes the process's baseline)"
        else:
            self.kind = "unavailable (needs Linux /proc/self/clear_refs)"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def rss_mib(self) -> float | None:
        return self._status("VmRSS")

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not self.kind.startswith("unavailable"):
            self._clear_refs()

    def read(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return None if self.kind.startswith("unavailable") else self._status("VmHWM")


@dataclass
class Timing:
    seconds: float         # median of the timed calls
    reps: int              # timed calls
    peak_mib: float | None


def measure(fn: Callable[[], object], device: torch.device, memory: PeakMemory, min_time: float,
            max_reps: int) -> Timing:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    memory.reset()
    times: list[float] = []
    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    if device.type != "cuda" and first >= LONG_CALL:
        times.append(first)
    while not times or (sum(times) < min_time and len(times) < max_reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), len(times), memory.read())


# --- the benchmark -----------------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    unit: str
    kind: str                       # "rate" (higher is better), "time" (lower is better) or "memory"
    values: dict = field(default_factory=dict)  # path -> value ("reference", "fast", "dcgan")


def build_models(resolution: int, device: torch.device, checkpoint_path: Path | None):
    """(model, adaptation config, meta config, description) for `resolution`."""
    base = None
    if checkpoint_path is not None and checkpoint_path.exists():
        base = load(checkpoint_path, device)
    adapt_cfg = base.adapt_defaults if base is not None else AdaptConfig(steps=10, batch_size=8, strategy="full")
    meta_cfg = (base.meta_config if base is not None and base.meta_config is not None
                else MetaConfig(meta_batch=2, support_size=REFERENCES, inner=adapt_cfg))
    gcfg = base.config.generator if base is not None else None
    channel_base = gcfg.channel_base if gcfg else 1024
    channel_max = gcfg.channel_max if gcfg else 128
    if base is not None and base.resolution == resolution:
        return base, adapt_cfg, meta_cfg, f"bundled checkpoint {checkpoint_path.name}"
    cfg = ModelConfig.for_resolution(resolution, channel_base=channel_base, channel_max=channel_max)
    model = MetaGAN.create(cfg, seed=0, adapt_defaults=adapt_cfg).to(device)
    return model, adapt_cfg, meta_cfg, f"random weights, channel_base {channel_base}, channel_max {channel_max}"


def synthetic_tasks(cfg: MetaConfig, resolution: int) -> TaskSet:
    gen = torch.Generator().manual_seed(0)
    n = max(cfg.meta_batch, 2)
    per_task = cfg.support_size + cfg.query_size
    return TaskSet([f"task{i}" for i in range(n)],
                   [torch.randint(0, 256, (per_task, 3, resolution, resolution), dtype=torch.uint8, generator=gen)
                    for _ in range(n)])


def bench_resolution(resolution: int, device: torch.device, memory: PeakMemory, fast: FastPath, args,
                     log: Callable[[str], None]) -> tuple[list[Row], dict]:
    model, adapt_cfg, meta_cfg, origin = build_models(resolution, device, args.checkpoint)
    dcgan = DCGAN(resolution, device)
    g_params, d_params = dcgan.parameters()
    summary = model.parameter_summary()
    info = {"model": origin, "metagan_parameters": summary, "dcgan_parameters": {"generator": g_params,
                                                                                   "discriminator": d_params},
            "adaptation": dataclasses.asdict(adapt_cfg), "meta_batch": meta_cfg.meta_batch,
            "inner_steps": meta_cfg.inner.steps}
    refs = torch.rand(REFERENCES, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    rows: list[Row] = []
    timing = dict(device=device, memory=memory, min_time=args.min_time, max_reps=args.max_reps)
    sampler = Sampler(model, fast)

    # sampling
    batch_rows = {b: Row(f"sampling, batch {b}", "images/s", "rate") for b in args.batches}
    latency = Row("sampling latency, batch 16", "ms", "time")
    sample_mem = Row(f"sampling peak memory, batch {max(args.batches)}", "MiB", "memory")
    paths = {
        "reference": lambda b: sample(model, 1, b, chunk_size=b),
        "fast": lambda b: sampler.sample(1, b, chunk_size=b),
        "dcgan": lambda b: dcgan.sample(1, b),
    }
    for path, fn in paths.items():
        for b in args.batches:
            log(f"  {resolution} px sampling, batch {b}, {path}")
            t = measure(lambda fn=fn, b=b: fn(b), **timing)
            batch_rows[b].values[path] = b / t.seconds
            if b == 16:
                latency.values[path] = t.seconds * 1e3
            if b == max(args.batches):
                sample_mem.values[path] = t.peak_mib
    rows += [batch_rows[b] for b in args.batches] + ([latency] if 16 in args.batches else []) + [sample_mem]

    # adaptation
    wall = Row(f"adaptation, default {REFERENCES}-shot ({adapt_cfg.steps} steps): wall", "s", "time")
    rate = Row("adaptation: inner steps/s", "steps/s", "rate")
    adapt_mem = Row("adaptation peak memory", "MiB", "memory")
    loop_seconds: dict[str, list[float]] = {}

    def run_adapt(path: str, path_fast):
        result = adapt(model, refs, adapt_cfg, seed=0, fast=path_fast)
        loop_seconds.setdefault(path, []).append(result.stats.seconds)
        return result

    def run_dcgan():  # as DCGAN.finetune, with its step loop timed apart
        step, G = dcgan.trainer(refs.to(device) * 2 - 1)
        start = time.perf_counter()
        for _ in range(adapt_cfg.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loop_seconds.setdefault("dcgan", []).append(time.perf_counter() - start)
        return G.eval()

    adapt_paths = {"reference": lambda: run_adapt("reference", None), "fast": lambda: run_adapt("fast", fast),
                   "dcgan": run_dcgan}
    for path, fn in adapt_paths.items():
        log(f"  {resolution} px adaptation, {path}")
        t = measure(fn, **timing)
        wall.values[path] = t.seconds
        rate.values[path] = adapt_cfg.steps / statistics.median(loop_seconds[path][-t.reps:])
        adapt_mem.values[path] = t.peak_mib
    rows += [wall, rate, adapt_mem]

    # meta-training
    tasks = synthetic_tasks(meta_cfg, resolution)
    inner_per_meta = meta_cfg.meta_batch * meta_cfg.inner.steps
    meta_rate = Row("meta-training: meta-steps/s", "steps/s", "rate")
    inner_rate = Row(f"meta-training: inner G+D steps/s ({meta_cfg.meta_batch} tasks x {meta_cfg.inner.steps})",
                     "steps/s", "rate")
    meta_mem = Row("meta-training peak memory", "MiB", "memory")
    meta_paths = {"reference": MetaTrainer(model, tasks, meta_cfg),
                  "fast": MetaTrainer(model, tasks, meta_cfg, fast=fast)}
    for path, trainer in meta_paths.items():
        log(f"  {resolution} px meta-training, {path}")
        t = measure(trainer.meta_step, **timing)
        meta_rate.values[path] = 1.0 / t.seconds
        inner_rate.values[path] = inner_per_meta / t.seconds
        meta_mem.values[path] = t.peak_mib
    log(f"  {resolution} px DCGAN training steps")
    step, _ = dcgan.trainer(refs.to(device) * 2 - 1)
    t = measure(step, **timing)
    inner_rate.values["dcgan"] = 1.0 / t.seconds
    meta_mem.values["dcgan"] = t.peak_mib
    rows += [meta_rate, inner_rate, meta_mem]

    if args.variants:  # the settings the auto choice leaves off, for comparison
        variant = dataclasses.replace(fast, bf16_train=not fast.bf16_train)
        log(f"  {resolution} px adaptation, fast with bf16_train={variant.bf16_train}")
        t = measure(lambda: adapt(model, refs, adapt_cfg, seed=0, fast=variant), **timing)
        rows.append(Row(f"adaptation wall, fast with bf16_train={variant.bf16_train}", "s", "time",
                        {"fast": t.seconds, "dcgan": wall.values["dcgan"]}))
        variant = dataclasses.replace(fast, vmap_tasks=not fast.vmap_tasks)
        log(f"  {resolution} px meta-training, fast with vmap_tasks={variant.vmap_tasks}")
        t = measure(MetaTrainer(model, tasks, meta_cfg, fast=variant).meta_step, **timing)
        rows.append(Row(f"meta-training inner steps/s, fast with vmap_tasks={variant.vmap_tasks}", "steps/s", "rate",
                        {"fast": inner_per_meta / t.seconds, "dcgan": inner_rate.values["dcgan"]}))
    return rows, info


def ratio(row: Row, path: str) -> str:
    mine, theirs = row.values.get(path), row.values.get("dcgan")
    if mine is None or theirs is None or mine <= 0 or theirs <= 0:
        return "-"
    if row.kind == "memory":
        return f"{mine / theirs:.2f}x mem"
    factor = mine / theirs if row.kind == "rate" else theirs / mine
    return f"{factor:.2f}x"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms" or unit == "s":
        return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(resolution: int, rows: list[Row]) -> str:
    header = [f"{resolution} px", "reference", "fast", "DCGAN", "ref vs DCGAN", "fast vs DCGAN"]
    body = [[f"{r.label} ({r.unit})", fmt(r.values.get("reference"), r.unit), fmt(r.values.get("fast"), r.unit),
             fmt(r.values.get("dcgan"), r.unit), ratio(r, "reference"), ratio(r, "fast")] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))) + " |"
             for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


TARGETS = {  # issue 4: (resolution, row label prefix, kind, bound, device kind)
    "cuda": [(64, "adaptation, default", "time", 1.0, "adaptation wall < 1 s (one H100)"),
             (64, "sampling, batch 1024", "rate", 100_000, "sampling >= 100,000 images/s at batch 1024 (one H100)"),
             (64, "sampling latency, batch 16", "time", 2.0, "sampling latency < 2 ms at batch 16 (one H100)"),
             (128, "adaptation, default", "time", 2.0, "adaptation wall < 2 s (one H100)"),
             (128, "sampling, batch 1024", "rate", 30_000, "sampling >= 30,000 images/s at batch 1024 (one H100)")],
    "cpu": [(64, "adaptation, default", "time", 60.0, "adaptation wall < 60 s (2-core CPU)"),
            (64, "sampling latency, batch 16", "time", 300.0, "16 samples < 0.3 s (2-core CPU)")],
}


def targets(results: dict[int, list[Row]], device: torch.device) -> list[str]:
    lines = []
    for res, prefix, kind, bound, text in TARGETS.get(device.type, []):
        row = next((r for r in results.get(res, []) if r.label.startswith(prefix)), None)
        if row is None:
            continue
        parts = []
        for path in ("fast", "reference"):
            value = row.values.get(path)
            if value is None:
                continue
            met = value < bound if kind == "time" else value >= bound
            parts.append(f"{path} {fmt(value, row.unit)} {'MET' if met else 'MISSED'}")
        lines.append(f"  {res} px {text}: " + "; ".join(parts))
    return lines


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    bf16 = "native bf16" if native_bf16_cpu() else "no native bf16"
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return f"{cpu_name()} ({bf16}), {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s){load}"


def run(args, log: Callable[[str], None], out: Callable[[str], None]) -> dict:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    fast = FastPath().resolve(device)
    memory = PeakMemory(device)
    out(f"MetaGAN speed benchmark: {describe_device(device)}; torch {torch.__version__}")
    out(f"fast path on {device.type}: {fast.describe()}")
    out(f"peak memory: {memory.kind}" + (f"; RSS at start {memory.rss_mib():.0f} MiB" if device.type != "cuda"
                                         and memory.rss_mib() else ""))
    results: dict[int, list[Row]] = {}
    report = {"device": describe_device(device), "torch": torch.__version__, "fast_path": fast.describe(),
              "memory": memory.kind, "resolutions": {}}
    started = time.perf_counter()
    for res in args.resolutions:
        rows, info = bench_resolution(res, device, memory, fast, args, log)
        results[res] = rows
        summary = info["metagan_parameters"]
        out("")
        out(f"{res} px: MetaGAN {info['model']} (G {summary['generator'] / 1e6:.2f} M, D "
            f"{summary['discriminator'] / 1e6:.2f} M parameters; adaptation {info['adaptation']['steps']} steps, "
            f"batch {info['adaptation']['batch_size']}, {info['adaptation']['strategy']}; meta-batch "
            f"{info['meta_batch']}); DCGAN G {info['dcgan_parameters']['generator'] / 1e6:.2f} M, D "
            f"{info['dcgan_parameters']['discriminator'] / 1e6:.2f} M parameters, batch {DCGAN_BATCH}")
        out(table(res, rows))
        report["resolutions"][res] = {"info": info, "rows": [dataclasses.asdict(r) for r in rows]}
    out("")
    out("ratios: >1x means MetaGAN is faster than the DCGAN (throughput ratio, or DCGAN time / MetaGAN time); "
        "'x mem' is MetaGAN / DCGAN peak memory (on a CPU: of the whole process). DCGAN 'adaptation' = copy + a "
        "batch-16 fine-tune of as many steps; a meta-step has no DCGAN counterpart, so meta-training is compared "
        "as inner G+D steps/s against DCGAN G+D training steps/s.")
    lines = targets(results, device)
    if lines:
        out("targets:")
        for line in lines:
            out(line)
    out(f"benchmark took {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report
