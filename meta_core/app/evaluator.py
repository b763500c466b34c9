"""The fixed evaluator network for FD/KID: a style classifier over all DiceBear styles.

Trained once by the repo (`python -m meta_core.evaluator --tasks DIR --out FILE`) and shipped; its
penultimate features are the space quality metrics are computed in. It is never the GAN's own
discriminator, and never changes during a benchmark.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..checkpoint import atomic_save, read_header
from ..data import load_task_folder, to_float
from ..errors import CheckpointError, UnknownFormatError

EVALUATOR_KIND = "metagan-evaluator"
INPUT_SIZE = 64
FEATURES = 256


class StyleClassifier(nn.Module):
    """[N, 3, 64, 64] in [-1, 1] -> features [N, 256] and class logits. GroupNorm: no running statistics."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                       nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1] * 2, FEATURES)  # mean- and max-pooled channels
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > INPUT_SIZE)
        h = self.body(x)
        return self.proj(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.silu(self.features(x)))


class Evaluator:
    """A loaded evaluator: `features(images01)` for images [N, 3, H, W] in 0..1."""

    def __init__(self, net: StyleClassifier, classes: list[str], info: dict):
        self.net = net.eval().requires_grad_(False)
        self.classes = classes
        self.info = info

    @torch.no_grad()
    def features(self, images01: torch.Tensor, batch: int = 256) -> torch.Tensor:
        dev = next(self.net.parameters()).device
        out = [self.net.features(images01[i:i + batch].to(dev) * 2 - 1).float().cpu()
               for i in range(0, images01.shape[0], batch)]
        return torch.cat(out)

    def to(self, device) -> Evaluator:
        self.net.to(device)
        return self


def load_evaluator(path, device="cpu") -> Evaluator:
    _, metadata = read_header(path)
    if metadata.get("model_kind") != EVALUATOR_KIND:
        raise UnknownFormatError(path, "is not a MetaGAN evaluator network: pass the evaluator_64.safetensors file")
    classes = json.loads(metadata["classes"])
    net = StyleClassifier(len(classes), int(metadata.get("width", "32")))
    try:
        net.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise CheckpointError(path, f"does not match the evaluator architecture ({exc}); retrain it") from None
    return Evaluator(net, classes, json.loads(metadata.get("info", "{}"))).to(device)


def train_evaluator(folders: list[str], out: str, epochs: int = 4, batch: int = 64, lr: float = 2e-3,
                    val_share: float = 0.1, seed: int = 0, device: str = "cpu", limit_per_task: int | None = None,
                    log=print) -> dict:
    """Train the style classifier on every sub-folder of `folders` (train and held-out styles alike)."""
    tasks = [load_task_folder(f, INPUT_SIZE, limit_per_task=limit_per_task) for f in folders]
    classes = [n for t in tasks for n in t.names]
    images = [im for t in tasks for im in t.images]
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y, val_x, val_y = [], [], [], []
    for label, im in enumerate(images):
        order = torch.randperm(im.shape[0], generator=gen)
        n_val = max(1, int(im.shape[0] * val_share))
        val_x.append(im[order[:n_val]])
        val_y.append(torch.full((n_val,), label))
        train_x.append(im[order[n_val:]])
        train_y.append(torch.full((im.shape[0] - n_val,), label))
    train_x, train_y = torch.cat(train_x), torch.cat(train_y)
    val_x, val_y = torch.cat(val_x), torch.cat(val_y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # module init only; fork_rng confines it
        net = StyleClassifier(len(classes)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (train_x.shape[0] // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        order = torch.randperm(train_x.shape[0], generator=gen)
        for i in range(0, train_x.shape[0] - batch + 1, batch):
            idx = order[i:i + batch]
            x = to_float(train_x[idx]).to(device)
            flip = torch.rand(x.shape[0], generator=gen) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(net(x), train_y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(to_float(val_x[i:i + 256]).to(device)).argmax(1).cpu()
                              for i in range(0, val_x.shape[0], 256)])
        net.train()
        acc = float((pred == val_y).float().mean())
        log(f"epoch {epoch + 1}/{epochs}: loss {float(loss.detach()):.3f}, validation accuracy {acc:.3f}, "
            f"{time.perf_counter() - start:.0f}s")
    info = {"validation_accuracy": round(acc, 4), "epochs": epochs, "train_images": int(train_x.shape[0]),
            "validation_images": int(val_x.shape[0]), "seconds": round(time.perf_counter() - start, 1),
            "folders": [str(f) for f in folders], "seed": seed,
            "command": "python -m meta_core.evaluator " + " ".join(sys.argv[1:])}
    metadata = {"model_kind": EVALUATOR_KIND, "format_version": "1", "classes": json.dumps(classes),
                "width": "32", "info": json.dumps(info)}
    atomic_save(dict(net.state_dict()), metadata, out)
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_core train-evaluator", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", required=True, help="folders with one sub-folder of images per style")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit-per-task", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    info = train_evaluator(args.tasks, args.out, epochs=args.epochs, device=args.device, seed=args.seed,
                           limit_per_task=args.limit_per_task)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
