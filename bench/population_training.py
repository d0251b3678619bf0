"""Population training: members trained together as one program against one model at a time.

    python bench/population_training.py [--population quick mini] [--members 8] [--epochs 3] [--device cpu] [--threads N]

For each population, takes the first ``--members`` configurations (or as many as there are) that
share its first configuration's architecture and batch size (quick: VGG base width 8, 7 such
configurations; mini: VGG base width 16, width and depth x1, batch 16), with the schedule cut to
``--epochs`` epochs, and trains them into two scratch zoos with
``icc_bench.population.train_population``, as ``icc-bench train`` does (records, checkpoints,
predictions written):

- one at a time: ``LocalExecutor(batch_models=1)``, ``train_model``'s own loop;
- batched: ``LocalExecutor(batch_models=members)``, one group (``icc_bench.train_batched``).

A warm-up of one member for one epoch on each side comes first (oneDNN builds its kernels on first
use). Both sides run in this process under the same load, and in the order half / batched / half:
the first half of the members one at a time, then all of them batched, then the other half one at
a time, so that a load that drifts during the run weighs on both sides alike. The ratio is one at
a time / batched, in wall-clock and in process CPU seconds. The load average before and after is
printed: on a machine with more runnable processes than cores, every parallel region of torch's
threads waits until all of them get a core, which costs milliseconds per operation (a BatchNorm of
(32, 16, 16, 16) took 23 ms on 2 threads and 0.2 ms on 1, at load 5 on 2 cores). One at a time
runs M times as many operations, so such a load inflates the ratio; ``--threads 1`` measures
without that effect.

Also printed: how far the batched records are from the one-at-a-time ones. They agree to float32
rounding at first (tests/test_train_batched.py), but rounding differences grow over training as
they do between any two float32 runs: ``train_model`` itself, on 1 thread and on 2, ends these 3
epochs with weights up to 0.2 (relative) apart and test accuracies 0.005 apart (measured on
mini's lr 0.032 SGD configurations). Float64 runs of batched and one-at-a-time agree to 1e-14.
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
from icc_bench.population import find_spec, train_population
from icc_bench.device import resolve_device
from icc_bench.train_batched import batch_key


def subset(spec: PopulationSpec, members: int, epochs: int) -> PopulationSpec:
    """The first ``members`` configurations that can share a group with the first one, ``epochs`` long."""
    configurations = spec.configurations()
    key = batch_key(spec.architecture, configurations[0])
    chosen = [hp for hp in configurations if batch_key(spec.architecture, hp) == key][:members]
    if len(chosen) < 2:
        raise SystemExit(f"population {spec.name!r}: its first configuration shares a group with no other")
    schedule = spec.schedule.model_copy(
        update={"epochs": epochs, "milestones": tuple(m for m in spec.schedule.milestones if m < epochs), "save_epochs": ()}
    )
    return PopulationSpec(
        name=f"{spec.name}_subset", dataset=spec.dataset, architecture=spec.architecture, schedule=schedule,
        configs=chosen, seeds=spec.seeds[:1],
    )


def timed_training(
    spec: PopulationSpec, runs: Path, batch_models: int, device: torch.device, limit: int | None = None
) -> tuple[float, float, list[dict]]:
    """Wall and process CPU seconds of training what ``runs`` misses of ``spec`` (at most ``limit``
    models), and the records in ``runs`` after it."""
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train_population(spec, runs, device=str(device), limit=limit, executor=LocalExecutor(batch_models=batch_models))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, summary.records


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", nargs="+", default=["quick", "mini"])
    parser.add_argument("--members", type=int, default=8, help="configurations trained, at most (default 8)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each (default 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.population:
        compare(find_spec(name), args.members, args.epochs, resolve_device(args.device))


def compare(spec: PopulationSpec, members: int, epochs: int, device: torch.device) -> None:
    """Print the one-at-a-time / batched ratio on ``members`` configurations of ``spec``."""
    sub = subset(spec, members, epochs)
    members = len(sub.configs)
    arch = sub.architecture
    hp = sub.configs[0]
    print(
        f"population {spec.name!r}: {members} configurations x {epochs} epochs, {arch.name} base width "
        f"{arch.base_width}, width x{hp.width:g}, depth x{hp.depth:g}, batch {hp.batch_size}, dataset {sub.dataset.name}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, device {device}")
    print(f"load average (1, 5, 15 min) before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="icc-bench-population-") as scratch:
        scratch = Path(scratch)
        warm = subset(spec, 2, 1)
        timed_training(warm.model_copy(update={"configs": warm.configs[:1]}), scratch / "warm1", 1, device)
        timed_training(warm, scratch / "warm2", 2, device)
        half_wall, half_cpu, _ = timed_training(sub, scratch / "one", 1, device, limit=members // 2)
        batched_wall, batched_cpu, batched = timed_training(sub, scratch / "batched", members, device)
        rest_wall, rest_cpu, one = timed_training(sub, scratch / "one", 1, device)
        one_wall, one_cpu = half_wall + rest_wall, half_cpu + rest_cpu
        assert len(one) == len(batched) == members, "every model must train on both sides"
    print(f"load average (1, 5, 15 min) after: {_load()}")

    print(f"{'':28} {'wall s':>8} {'CPU s':>8} {'s/model':>8}")
    print(f"{'one at a time':28} {one_wall:>8.1f} {one_cpu:>8.1f} {one_wall / members:>8.2f}")
    print(f"{f'batched ({members} per group)':28} {batched_wall:>8.1f} {batched_cpu:>8.1f} {batched_wall / members:>8.2f}")
    loss = max(abs(b["train_loss"] - a["train_loss"]) / a["train_loss"] for a, b in zip(one, batched))
    same = sum(a["test_accuracy"] == b["test_accuracy"] for a, b in zip(one, batched))
    print(f"batched records vs one at a time: final training loss within {loss:.1e} relative, test accuracy identical for {same}/{members} models")
    print(f"ratio (one at a time / batched): {one_wall / batched_wall:.2f}x wall, {one_cpu / batched_cpu:.2f}x CPU")
    print()


if __name__ == "__main__":
    main()
