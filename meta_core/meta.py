"""Meta-training: Reptile (default) and first-order MAML over tasks, both G and D meta-learned.

The inner loop is `loop.InnerLoop`, the very code few-shot adaptation runs. Every random draw of
outer step s and task slot j derives from (seed, s, j) alone, so a run resumed from a checkpoint
follows the same trajectory, and ranks under `torchrun` split a meta-batch without changing it:
rank r adapts slots r, r + world, ...; deltas (or gradients) are summed with one all-reduce.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from collections.abc import Callable

import torch
import torch.distributed

from .config import MetaConfig
from .data import TaskSet, to_float
from .errors import ConfigError, TrainingDivergedError
from .fastpath import FastPath
from .loop import COLLAPSE_STD, InnerLoop, draw_step_noise, sample_diversity
from .model import MetaGAN, Params
from .seeding import derived_generator

# --- outer updates (pure functions, checked against hand computations in the tests) -------------

def reptile_update(theta: Params, delta_sum: Params, count: int, eps: float) -> Params:
    """theta + eps * mean_tasks(theta_task - theta), given the sum of task deltas over `count` tasks."""
    return {n: theta[n] + (eps / count) * delta_sum[n] if n in delta_sum else theta[n] for n in theta}


def fomaml_update(theta: Params, grad_sum: Params, count: int, lr: float) -> Params:
    """theta - lr * mean_tasks(grad of the query loss at the adapted weights)."""
    return {n: theta[n] - (lr / count) * grad_sum[n] if n in grad_sum else theta[n] for n in theta}


# --- distribution ------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sum a list of tensors over ranks with a single flat all-reduce."""
        if not self.active:
            return tensors
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        out, i = [], 0
        for t in tensors:
            out.append(flat[i:i + t.numel()].view_as(t).to(t.dtype))
            i += t.numel()
        return out


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


# --- the trainer ---------------------------------------------------------------------------------

@dataclass
class MetaStepStats:
    step: int
    eps: float
    d_loss: float
    g_loss: float
    rollbacks: int
    failed_tasks: int
    seconds: float


class MetaTrainer:
    """Owns theta (G and D weights as dicts) and advances it one outer step at a time."""

    def __init__(self, model: MetaGAN, tasks: TaskSet, cfg: MetaConfig, dist: Dist | None = None,
                 fast: FastPath | None = None):
        """`fast`: None (default) adapts the tasks one after another with the reference inner loop; a
        `FastPath` configures it (with `vmap_tasks`, a rank's tasks adapt together through vmap)."""
        if len(tasks) == 0:
            raise ConfigError("meta-training needs at least one task")
        self.model = model
        self.tasks = tasks
        self.cfg = cfg
        self.dist = dist or Dist()
        self.fast = None if fast is None else fast.resolve(model.device)
        self.loop = InnerLoop(model, cfg.inner, self.fast)
        self.theta_g = {n: t.detach().clone() for n, t in model.g_params().items()}
        self.theta_d = {n: t.detach().clone() for n, t in model.d_params().items()}
        self.step = model.meta_step

    def plan(self, step: int) -> list[int]:
        """Task indices of outer step `step` (the same on every rank)."""
        gen = derived_generator(self.cfg.seed, step)
        n = len(self.tasks)
        if n >= self.cfg.meta_batch:
            return torch.randperm(n, generator=gen)[: self.cfg.meta_batch].tolist()
        return torch.randint(0, n, (self.cfg.meta_batch,), generator=gen).tolist()

    def task_batch(self, task: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(support, query) images of one task as float [-1, 1] on the model's device."""
        images = self.tasks.images[task]
        n = images.shape[0]
        order = torch.randperm(n, generator=gen)
        support = order[: self.cfg.support_size]
        rest = order[self.cfg.support_size:]
        query = rest[: self.cfg.query_size] if len(rest) else torch.randint(0, n, (self.cfg.query_size,), generator=gen)
        dev = self.model.device
        return to_float(images[support]).to(dev), to_float(images[query]).to(dev)

    def contribution(self, g: Params, d: Params, stats, query: torch.Tensor, gen: torch.Generator):
        """What an adapted task (g, d) adds to the outer update: Reptile theta_task - theta; FOMAML the
        gradients of the query losses at theta_task, its query noise drawn from `gen`."""
        if self.cfg.algorithm == "reptile":
            return ({n: g[n] - self.theta_g[n] for n in g}, {n: d[n] - self.theta_d[n] for n in d}, stats)
        gcfg = self.model.config.generator
        noise = draw_step_noise(gen, query.shape[0], self.cfg.query_size, gcfg.z_dim, gcfg.resolution,
                                self.cfg.inner.augment.probability)
        one = self.loop.single
        real = query[noise.real_index.to(query.device)]
        grads_d, _ = one.d_grads(g, d, real, noise, one.r1_at(1), list(d))  # R1 only if every step has it
        grads_g, _ = one.g_grads(g, d, noise, list(g), query.device)
        return grads_g, grads_d, stats

    def meta_step(self) -> MetaStepStats:
        start = time.perf_counter()
        step = self.step
        plan = self.plan(step)
        sum_g = {n: torch.zeros_like(t) for n, t in self.theta_g.items()}
        sum_d = {n: torch.zeros_like(t) for n, t in self.theta_d.items()}
        counters = torch.zeros(5, dtype=torch.float64)  # ok tasks, failed tasks, d_loss, g_loss, rollbacks
        last_error = ""
        for outcome in self._outcomes(step, plan):
            if isinstance(outcome, TrainingDivergedError):
                last_error = str(outcome)
                counters[1] += 1  # a diverged task contributes nothing; the others still count
                continue
            cg, cd, stats = outcome
            for n in sum_g:
                if n in cg:
                    sum_g[n] += cg[n]
            for n in sum_d:
                if n in cd:
                    sum_d[n] += cd[n]
            counters += torch.tensor([1, 0, stats.d_loss[-1], stats.g_loss[-1], stats.rollbacks], dtype=torch.float64)
        names_g, names_d = list(sum_g), list(sum_d)
        reduced = self.dist.all_reduce_sum([*sum_g.values(), *sum_d.values(), counters.to(self.model.device)])
        sum_g = dict(zip(names_g, reduced[: len(names_g)]))
        sum_d = dict(zip(names_d, reduced[len(names_g): len(names_g) + len(names_d)]))
        counters = reduced[-1].double().cpu()
        ok = int(counters[0])
        if ok == 0:
            raise TrainingDivergedError(f"meta-step {step}: every task diverged; lower the inner learning rates "
                                        f"(lr_g={self.cfg.inner.lr_g}, lr_d={self.cfg.inner.lr_d}). Last: {last_error}")
        eps = self.cfg.eps_at(step)
        if self.cfg.algorithm == "reptile":
            self.theta_g = reptile_update(self.theta_g, sum_g, ok, eps)
            self.theta_d = reptile_update(self.theta_d, sum_d, ok, eps)
        else:
            self.theta_g = fomaml_update(self.theta_g, sum_g, ok, self.cfg.outer_lr)
            self.theta_d = fomaml_update(self.theta_d, sum_d, ok, self.cfg.outer_lr)
        self.step += 1
        self.check_theta()
        return MetaStepStats(step=self.step, eps=eps, d_loss=float(counters[2]) / ok, g_loss=float(counters[3]) / ok,
                             rollbacks=int(counters[4]), failed_tasks=int(counters[1]),
                             seconds=time.perf_counter() - start)

    def _outcomes(self, step: int, plan: list[int]) -> list:
        """(G contribution, D contribution, stats) or the TrainingDivergedError of each of this rank's slots."""
        slots = list(range(self.dist.rank, len(plan), self.dist.world))
        gens = [derived_generator(self.cfg.seed, step, slot) for slot in slots]
        batches = [self.task_batch(plan[slot], gen) for slot, gen in zip(slots, gens)]
        if not slots:
            return []
        results = self.loop.run_tasks(self.theta_g, self.theta_d, [b[0] for b in batches], gens)
        return [result if isinstance(result, TrainingDivergedError) else self.contribution(*result, query, gen)
                for result, (_, query), gen in zip(results, batches, gens)]

    def check_theta(self) -> None:
        """Stop, rather than save a broken model, when theta went non-finite or G collapsed."""
        bad = [n for n, t in (*self.theta_g.items(), *self.theta_d.items()) if not bool(torch.isfinite(t).all())]
        if bad:
            raise TrainingDivergedError(f"meta-step {self.step}: weights became non-finite ({bad[:3]}); resume from "
                                        "the last checkpoint with lower inner learning rates or a smaller eps")
        diversity = sample_diversity(self.model, self.theta_g)
        if diversity < COLLAPSE_STD:
            raise TrainingDivergedError(f"meta-step {self.step}: the generator collapsed (every sample is nearly the "
                                        f"same image, diversity {diversity:.1e}); resume from the last checkpoint "
                                        "with lower inner learning rates")

    def current_model(self, **changes) -> MetaGAN:
        """theta as a MetaGAN whose adaptation defaults are the inner loop meta-training used."""
        return self.model.with_params(self.theta_g, self.theta_d, adapt_defaults=self.cfg.inner,
                                      meta_config=self.cfg, meta_step=self.step, **changes)

    def run(self, until: int | None = None, on_step: Callable[[MetaStepStats], None] | None = None) -> MetaGAN:
        """Outer steps until `until` (default: cfg.steps, read again after every step so that `on_step`
        may shorten the run with `fit_schedule`). `on_step` may raise to stop early."""
        while self.step < (self.cfg.steps if until is None else until):
            stats = self.meta_step()
            if on_step is not None:
                on_step(stats)
        return self.current_model()

    def fit_schedule(self, steps: int) -> None:
        """End the run at `steps` outer steps (no fewer than done: then it ends now) and anneal eps to its
        end value there: how a time budget is met. Steps already taken keep the eps they had."""
        steps = max(self.step, 1, int(steps))
        if steps != self.cfg.steps:
            self.cfg = dataclasses.replace(self.cfg, steps=steps)
