"""Training throughput: icc-bench's device-resident batches against a torchvision DataLoader.

Both sides train the same model (the quick population's VGG) on the same data with the same
augmentation (4-pixel reflection-padded shifts and horizontal flips), one epoch after a warm-up
epoch, and report images per second. The reference is the usual PyTorch recipe: a Dataset whose
__getitem__ applies torchvision transforms per sample, batched by a DataLoader.

    python bench/train_throughput.py [--device cpu|cuda] [--epochs 2] [--workers 0]

Prints one table; the ratio is measured in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.data import iterate_batches
from icc_bench.models import build_model
from icc_bench.population import find_spec, load_job_dataset
from icc_bench.device import resolve_device
from icc_bench.train import make_optimizer


class AugmentedTensors(Dataset):
    """The reference: per-sample torchvision transforms, as in most training scripts."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.transform = v2.Compose([v2.RandomCrop(x.shape[-1], padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


def _step(model, optimizer, xb, yb) -> None:
    loss = F.cross_entropy(model(xb), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _fresh(arch: ArchitectureSpec, hp: HyperParams, data, device):
    torch.manual_seed(0)
    model = build_model(arch, hp, data.num_classes, data.input_shape).to(device).train()
    return model, make_optimizer(model, hp)


def time_device_resident(arch, hp, data, device, epochs: int) -> float:
    model, opt = _fresh(arch, hp, data, device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def epoch() -> None:
        for xb, yb in iterate_batches(x, y, hp.batch_size, shuffle=True, generator=gen, augment=True):
            _step(model, opt, xb, yb)

    epoch()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(device)
    return epochs * len(x) / (time.perf_counter() - t0)


def time_dataloader(arch, hp, data, device, epochs: int, workers: int) -> float:
    model, opt = _fresh(arch, hp, data, device)
    loader = DataLoader(
        AugmentedTensors(data.x_train.cpu(), data.y_train.cpu()), batch_size=hp.batch_size, shuffle=True,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )

    def epoch() -> None:
        for xb, yb in loader:
            _step(model, opt, xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))

    epoch()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(device)
    return epochs * len(data.x_train) / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference")
    args = parser.parse_args()

    spec = find_spec(args.population)
    device = resolve_device(args.device)
    data = load_job_dataset(spec.dataset, None)
    hp = spec.configurations()[0].model_copy(update={"augmentation": True})
    ours = time_device_resident(spec.architecture, hp, data, device, args.epochs)
    ref = time_dataloader(spec.architecture, hp, data, device, args.epochs, args.workers)
    print(f"training throughput, population {spec.name!r}: {len(data.x_train)} images {tuple(data.input_shape)}, "
          f"{spec.architecture.name} width {spec.architecture.base_width}, batch {hp.batch_size}, augmentation on")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}")
    print(f"{'loader':<42} {'images/s':>10}")
    print(f"{'icc-bench device-resident batches':<42} {ours:>10.0f}")
    print(f"{f'torchvision DataLoader ({args.workers} workers)':<42} {ref:>10.0f}")
    print(f"ratio (icc-bench / DataLoader): {ours / ref:.2f}x")


if __name__ == "__main__":
    main()
