"""What the paper's populations would cost to train on this machine: batched against one at a time.

    python bench/paper_gpu_hours.py [--population wrn_cifar100_coarse wrn_cifar100 vgg_cifar10]
                                    [--device auto] [--members 16] [--steps 10]

For each population, its configurations fall into groups that can train together
(:func:`icc_bench.train_batched.batch_key`: architecture, width and depth factors, batch size; 6 per
paper population). For each group this times one training step

- of one model alone: :func:`icc_bench.train.train_model` on the group's first configuration;
- of ``--members`` members together: :func:`icc_bench.train_batched.train_batched` on the group's
  first ``--members`` configurations (their optimizers, learning rates, dropout and augmentation
  as the grid mixes them),

each as the difference between the best of two 3-epoch and of two 1-epoch runs of ``--steps`` steps per epoch,
divided by the steps between them: what a run costs once (building the networks, moving the data,
the final predictions) cancels. The data are a stand-in of CIFAR's shape (3 x 32 x 32 images,
the dataset's number of classes, random pixels and labels): a step costs the same whatever the
pixels are, and nothing is read from disk, so this runs where CIFAR is absent.

The projection multiplies out: a model trains ``epochs`` x ceil(50,000 / batch size) steps (the
spec's schedule on CIFAR's training set), so

    one at a time: sum over configurations and seeds of steps x (seconds of one step alone)
    batched:       sum over groups of ceil(members of the group / --members) x steps x (seconds of a group step)

It is an upper bound on training alone: the early stop at a training loss of 1e-4 ends many runs
sooner, and the test passes, the snapshots and the measures are not counted. The ratio of the two
is what batching saves on this device. Without CUDA it measures nothing unless ``--device cpu`` is
given (the paper's networks on a laptop CPU take minutes per step group).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping

import torch

from icc_bench.config import ArchitectureSpec, HyperParams, PopulationSpec, Schedule
from icc_bench.data import ImageDataset
from icc_bench.device import resolve_device
from icc_bench.errors import UserError
from icc_bench.population import find_spec
from icc_bench.train import train_model
from icc_bench.train_batched import Member, batch_key, train_batched

PAPER = ("wrn_cifar100_coarse", "wrn_cifar100", "vgg_cifar10")
#: Classes trained on by each CIFAR dataset; CIFAR's training set has 50,000 images in each.
CLASSES = {"cifar10": 10, "cifar100": 100, "cifar100_coarse": 20}
TRAIN_IMAGES = 50_000


def stand_in(num_classes: int, images: int, seed: int = 0) -> ImageDataset:
    """Random 3 x 32 x 32 images and labels: CIFAR's shape, for timing only."""
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(
        name="stand-in", num_classes=num_classes,
        x_train=torch.randn(images, 3, 32, 32, generator=g), y_train=torch.randint(num_classes, (images,), generator=g),
        x_test=torch.randn(64, 3, 32, 32, generator=g), y_test=torch.randint(num_classes, (64,), generator=g),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(architecture: ArchitectureSpec, hps: list[HyperParams], data: ImageDataset, steps: int,
                 device: torch.device) -> float:
    """Seconds of one training step of ``hps`` (one: alone; more: batched), from a 3- and a 1-epoch run."""
    def run(epochs: int) -> float:
        schedule = Schedule(epochs=epochs, milestones=(), stop_train_loss=0.0, test_every=0, save_epochs=())
        _sync(device)
        start = time.perf_counter()
        if len(hps) == 1:
            train_model(architecture, hps[0], schedule, data, seed=0, device=device)
        else:
            for _ in train_batched(architecture, [Member(hp, seed=i, schedule=schedule) for i, hp in enumerate(hps)],
                                   data, device=device):
                pass
        _sync(device)
        return time.perf_counter() - start

    run(1)  # warm-up: kernels chosen and compiled, caches filled
    three, one = min(run(3), run(3)), min(run(1), run(1))  # best of 2: a busy machine only adds time
    return max(three - one, 0.0) / (2 * steps)


def groups(spec: PopulationSpec) -> dict[tuple, list[HyperParams]]:
    found: dict[tuple, list[HyperParams]] = {}
    for hp in spec.configurations():
        key = batch_key(spec.architecture, hp)
        if key is None:
            raise SystemExit(f"population {spec.name!r}: architecture {spec.architecture.name!r} does not train batched")
        found.setdefault(key, []).append(hp)
    return found


def project(spec: PopulationSpec, found: Mapping[tuple, list[HyperParams]], alone: Mapping[tuple, float],
            together: Mapping[tuple, float], members: int, train_images: int = TRAIN_IMAGES) -> tuple[float, float]:
    """(hours one at a time, hours batched) to train every model of ``spec`` for its full schedule."""
    seeds = len(spec.seeds)
    hours_alone = hours_batched = 0.0
    for key, hps in found.items():
        steps = spec.schedule.epochs * math.ceil(train_images / hps[0].batch_size)
        hours_alone += len(hps) * seeds * steps * alone[key] / 3600
        hours_batched += math.ceil(len(hps) * seeds / members) * steps * together[key] / 3600
    return hours_alone, hours_batched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", nargs="+", default=list(PAPER), help="spec names or paths (CIFAR datasets)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cpu (default auto)")
    parser.add_argument("--members", type=int, default=16, help="members trained together per group (default 16)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed epoch (default 10)")
    args = parser.parse_args(argv)

    if args.device == "auto" and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the paper's networks take minutes per group on a CPU; "
              "pass --device cpu to time them anyway)")
        return 0
    try:
        device = resolve_device(None if args.device == "auto" else args.device)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {args.members} members per group, {args.steps} steps per timed epoch")
    for target in args.population:
        spec = find_spec(target)
        if spec.dataset.name not in CLASSES:
            raise SystemExit(f"population {spec.name!r}: dataset {spec.dataset.name!r} is not CIFAR; this projects the paper's CIFAR populations")
        found = groups(spec)
        alone, together = {}, {}
        print(f"\npopulation '{spec.name}': {sum(map(len, found.values())) * len(spec.seeds)} models, {len(found)} groups, "
              f"{spec.architecture.name} base width {spec.architecture.base_width}, {spec.schedule.epochs} epochs")
        print(f"  {'group (width, depth, batch)':<30} {'s/step alone':>12} {'s/step group':>12} {'members':>8} {'speedup':>8}")
        for key, hps in found.items():
            chosen = hps[: args.members]
            data = stand_in(CLASSES[spec.dataset.name], args.steps * hps[0].batch_size)
            alone[key] = step_seconds(spec.architecture, chosen[:1], data, args.steps, device)
            together[key] = step_seconds(spec.architecture, chosen, data, args.steps, device)
            if min(alone[key], together[key]) <= 0:
                raise SystemExit(f"population {spec.name!r}, group {key[3:]}: a step took no measurable time next to the "
                                 "noise of a whole run; raise --steps")
            speedup = len(chosen) * alone[key] / together[key]
            print(f"  {str(key[3:]):<30} {alone[key]:>12.4f} {together[key]:>12.4f} {len(chosen):>8} {speedup:>7.1f}x")
        hours_alone, hours_batched = project(spec, found, alone, together, args.members)
        print(f"  projected hours of training: one at a time {hours_alone:.1f}, batched {hours_batched:.1f}")
        print(f"  ratio ({spec.name}, one at a time / batched): {hours_alone / hours_batched:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
