"""`FastPath`: which speed features the engine's loops and sampler use. Each is a configuration of the
one reference implementation, not a copy of it; `tests/test_fast.py` compares each with the reference.

| option          | CPU  | CUDA  | what it does |
|-----------------|------|-------|--------------|
| `channels_last` | on   | on    | NHWC conv weights, references and activations |
| `foreach`       | on   | on    | multi-tensor Adam (`torch._foreach_*`), op for op the per-tensor arithmetic |
| `bf16_sample`   | off  | on    | sampling: bf16 autocast for G's synthesis; mapping and the toRGB skip sum stay fp32 |
| `bf16_train`    | (**) | off   | adaptation, meta-training: bf16 autocast for G and D (losses, R1 sum, Adam in fp32) |
| `cuda_graph`    | -    | on    | one-task adaptation steps (with, without R1) and sampling chunks replay CUDA graphs |
| `vmap_tasks`    | off  | on    | meta-training: a rank's tasks adapt together, G and D through `torch.func.vmap` |
| `check_every`   | 10   | (*)   | adaptation: steps per host sync that checks for NaN/inf (*: the collapse interval) |
| `sample_batch`  | 32   | all   | sampling: images per G call (a CPU runs G fastest a few dozen at a time) |

(**) on where the CPU computes bf16 natively (AMX or AVX512-BF16, as `native_bf16_cpu` reads it), else off.

`fast=None` anywhere means `FastPath.reference()`: every feature off, a finiteness check after every step.

Measured on a 2-core Xeon (1 thread): channels_last halves G's forward time and saves ~10 % of an
adaptation step; `vmap_tasks` makes a meta-step ~15 % slower there (vmap turns per-task weights into grouped
convolutions, which oneDNN runs slower than separate ones), so a CPU adapts a meta-batch's tasks one after
another. On CUDA vmap cuts the kernel launches of a meta-batch by its task count. On a Xeon with AMX, bf16
autocast makes a 64 px DCGAN adaptation step at batch 16 ~25-30 % faster and a pretraining step at batch 32
~1.45x faster; without native bf16 a CPU emulates it slowly, so it stays off there. It is off on CUDA until
measured there. The per-step finiteness check costs a snapshot of every trained weight and Adam moment
(~30 ms of a ~300 ms DCGAN step): a CPU checks every 10 steps, which keeps the progress bar and cancel within
a few seconds.

Semantics kept from the reference configuration:
- Randomness: all of it is drawn on the CPU from the caller's generator(s), in the reference order.
- Rollback: a step with a non-finite loss or gradient is discarded. With `check_every` > 1 the loop checks
  once per window (a snapshot of the trainable weights and Adam state is taken at the window start); a
  window holding a bad step is restored and re-run one step at a time with the per-step rule, so which
  steps count, `rollbacks` and the `max_rollbacks` error are the reference's. Window ends always include
  the collapse-check steps.
- `on_step` is called for every step, after the window holding it has finished; its `preview` shows the
  weights at the end of that window. Cancelling (raising) takes effect within one window.
- Adaptive augmentation (ADA) needs each step's result before drawing the next step's noise, so it runs
  with windows of one step.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace

import torch

from .errors import ConfigError

CPU_FEATURES = ("channels_last", "foreach")                     # what the auto setting turns on everywhere ...
CUDA_FEATURES = ("bf16_sample", "cuda_graph", "vmap_tasks")     # ... and in addition on CUDA
NATIVE_BF16_CPU_FEATURES = ("bf16_train",)                      # ... and on a CPU with bf16 in hardware
CPU_CHECK_EVERY = 10   # steps per finiteness check on a CPU: the snapshot's cost amortised, progress still fluent
CPU_SAMPLE_BATCH = 32  # measured: 1.5-2x the sampling throughput of 256 or 1024 images per G call on a CPU
FLAGS = ("bf16_sample", "bf16_train", "channels_last", "foreach", "cuda_graph", "vmap_tasks")


@dataclass(frozen=True)
class FastPath:
    """Which speed features to use. `None` means: what helps on the device (see the module docstring).

    Asking for `cuda_graph=True` on another device raises `ConfigError` rather than quietly running
    something else.

    Example:
        >>> adapted = adapt(model, refs, seed=0, fast=FastPath()).model
        >>> images = sample(adapted, seed=1, count=16, fast=FastPath())
    """
    bf16_sample: bool | None = None    # sampling: bf16 autocast for the synthesis network
    bf16_train: bool | None = None     # adaptation and meta-training: bf16 autocast for G and D
    channels_last: bool | None = None  # NHWC weights and activations
    foreach: bool = True               # multi-tensor Adam
    cuda_graph: bool | None = None     # captured CUDA graphs for adaptation steps and sampling chunks (CUDA only)
    vmap_tasks: bool | None = None     # meta-training: vmap the inner loops of a meta-batch's tasks together
    check_every: int | None = None     # adaptation: steps per finiteness check (None: 10 on a CPU, the collapse
    #                                    interval on CUDA)
    sample_batch: int | None = None    # sampling: images per G call (None: CPU_SAMPLE_BATCH on a CPU, whole chunks
    #                                    on CUDA)

    def __post_init__(self):
        for name in ("check_every", "sample_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} {value!r} must be a positive integer or None")

    @classmethod
    def reference(cls) -> FastPath:
        """Every feature off: the plain path that the fast ones are compared with."""
        return cls(bf16_sample=False, bf16_train=False, channels_last=False, foreach=False, cuda_graph=False,
                   vmap_tasks=False, check_every=1, sample_batch=0x7FFFFFFF)

    def resolve(self, device) -> FastPath:
        """The concrete settings for `device` (every flag True or False; `check_every` None means the
        collapse-check interval)."""
        device = torch.device(device)
        cuda = device.type == "cuda"

        auto = {*CPU_FEATURES, *(CUDA_FEATURES if cuda else ()),
                *(NATIVE_BF16_CPU_FEATURES if device.type == "cpu" and native_bf16_cpu() else ())}

        def pick(name: str, value, cuda_only: bool) -> bool:
            if value is None:
                return name in auto
            if value and cuda_only and not cuda:
                raise ConfigError(f"fast path option {name}=True needs a CUDA device, not {device}: leave it unset "
                                  f"(None) to use what helps on {device.type}")
            return bool(value)

        return replace(self,
                       bf16_sample=pick("bf16_sample", self.bf16_sample, False),
                       bf16_train=pick("bf16_train", self.bf16_train, False),
                       channels_last=pick("channels_last", self.channels_last, False),
                       cuda_graph=pick("cuda_graph", self.cuda_graph, True),
                       vmap_tasks=pick("vmap_tasks", self.vmap_tasks, False),
                       check_every=self.check_every if self.check_every is not None else
                       (None if cuda else CPU_CHECK_EVERY),
                       sample_batch=self.sample_batch or (0x7FFFFFFF if cuda else CPU_SAMPLE_BATCH))

    def describe(self) -> str:
        on = [name for name in FLAGS if getattr(self, name)]
        every = "collapse-check interval" if self.check_every is None else self.check_every
        return f"{'+'.join(on) or 'nothing'}; finiteness check every {every} step(s)"


@functools.cache
def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AMX or AVX512-BF16 in Linux's cpuinfo flags; False where
    that file is missing). PyTorch's own check (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) also says yes on
    AVX512 CPUs that only emulate bf16."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags))


def resolve(fast: FastPath | None, device) -> FastPath:
    """`fast` resolved for `device`; None is the reference configuration."""
    return (fast or FastPath.reference()).resolve(device)


def autocast_bf16(enabled: bool, device_type: str):
    """bf16 autocast (weight cache off, so it is safe inside CUDA-graph capture), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


def memory_format(t: torch.Tensor, channels_last: bool) -> torch.memory_format:
    """The layout a weight or image batch takes on this path."""
    return torch.channels_last if channels_last and t.dim() == 4 else torch.contiguous_format
