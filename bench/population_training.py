"""Population training: members trained together as one program against one model at a time.

    python bench/population_training.py [--population mini] [--members 16] [--epochs 3] [--device cpu]

Takes the first ``--members`` configurations of the population that share its first
configuration's architecture and batch size (for mini: VGG base width 4, width and depth x1,
batch 32; two learning rates, SGD and Adam, dropout 0 / 0.2 / 0.4, augmentation on and off), with
the schedule cut to ``--epochs`` epochs, and trains them into two scratch zoos with
``icc_bench.population.train_population``, as ``icc-bench train`` does (records, checkpoints,
predictions written):

- one at a time: ``LocalExecutor(batch_models=1)``, ``train_model``'s own loop;
- batched: ``LocalExecutor(batch_models=members)``, one group (``icc_bench.train_batched``).

A warm-up of one member for one epoch on each side comes first (oneDNN builds its kernels on first
use). Both sides run in this process, one after the other, under the same load: the ratio is one
at a time / batched, in wall-clock and in process CPU seconds (the latter is steadier on a shared
machine). The load average before and after is printed, and how far the batched records are from
the one-at-a-time ones (they agree to float32 rounding, see tests/test_train_batched.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from icc_bench.config import PopulationSpec
from icc_bench.executors import LocalExecutor
from icc_bench.population import expand, find_spec, train_population
from icc_bench.train import resolve_device
from icc_bench.train_batched import batch_key


def subset(spec: PopulationSpec, members: int, epochs: int) -> PopulationSpec:
    """The first ``members`` configurations that can share a group with the first one, ``epochs`` long."""
    configurations = spec.configurations()
    key = batch_key(spec.architecture, configurations[0])
    chosen = [hp for hp in configurations if batch_key(spec.architecture, hp) == key][:members]
    if len(chosen) < members:
        raise SystemExit(f"population {spec.name!r} has only {len(chosen)} configurations that share a group; lower --members")
    schedule = spec.schedule.model_copy(
        update={"epochs": epochs, "milestones": tuple(m for m in spec.schedule.milestones if m < epochs), "save_epochs": ()}
    )
    return PopulationSpec(
        name=f"{spec.name}_subset", dataset=spec.dataset, architecture=spec.architecture, schedule=schedule,
        configs=chosen, seeds=spec.seeds[:1],
    )


def timed_training(spec: PopulationSpec, runs: Path, batch_models: int, device: torch.device) -> tuple[float, float, list[dict]]:
    """Wall and process CPU seconds of training ``spec`` into ``runs``, and the records."""
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train_population(spec, runs, device=str(device), executor=LocalExecutor(batch_models=batch_models))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert summary.trained == len(expand(spec)), "every model must train"
    return wall, cpu, summary.records


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="mini")
    parser.add_argument("--members", type=int, default=16, help="configurations trained (default 16)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each (default 3)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    spec = find_spec(args.population)
    sub = subset(spec, args.members, args.epochs)
    device = resolve_device(args.device)
    arch = sub.architecture
    hp = sub.configs[0]
    print(
        f"population {spec.name!r}: {args.members} configurations x {args.epochs} epochs, {arch.name} base width "
        f"{arch.base_width}, width x{hp.width:g}, depth x{hp.depth:g}, batch {hp.batch_size}, dataset {sub.dataset.name}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, device {device}")
    print(f"load average (1, 5, 15 min) before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="icc-bench-population-") as scratch:
        scratch = Path(scratch)
        warm = subset(spec, 2, 1)
        timed_training(warm.model_copy(update={"configs": warm.configs[:1]}), scratch / "warm1", 1, device)
        timed_training(warm, scratch / "warm2", 2, device)
        one_wall, one_cpu, one = timed_training(sub, scratch / "one", 1, device)
        batched_wall, batched_cpu, batched = timed_training(sub, scratch / "batched", args.members, device)
    print(f"load average (1, 5, 15 min) after: {_load()}")

    models = len(one)
    print(f"{'':28} {'wall s':>8} {'CPU s':>8} {'s/model':>8}")
    print(f"{'one at a time':28} {one_wall:>8.1f} {one_cpu:>8.1f} {one_wall / models:>8.2f}")
    print(f"{f'batched ({args.members} per group)':28} {batched_wall:>8.1f} {batched_cpu:>8.1f} {batched_wall / models:>8.2f}")
    loss = max(abs(b["train_loss"] - a["train_loss"]) / a["train_loss"] for a, b in zip(one, batched))
    same = sum(a["test_accuracy"] == b["test_accuracy"] for a, b in zip(one, batched))
    print(f"agreement: final training loss within {loss:.1e} relative; test accuracy identical for {same}/{models} models")
    print(f"ratio (one at a time / batched): {one_wall / batched_wall:.2f}x wall, {one_cpu / batched_cpu:.2f}x CPU")


if __name__ == "__main__":
    main()
