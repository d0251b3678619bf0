"""Cost of the four sharpness measures: the plugin's implementation against a straightforward loop.

    python bench/sharpness_cost.py [--epochs 20] [--threads 2] [--no-vmapped]

Trains the base configuration of ``model_zoo/quick.toml`` (VGG width 8, its first grid point, on the
embedded synthetic hierarchy: 600 training images, 3 x 16 x 16, nothing downloaded) with a plain
SGD loop and the spec's schedule, then computes sigma', sigma'', alpha', alpha'' with the SPEC §3
defaults (not quick's laptop overrides) with:

- batched: ``icc_sharpness.perturb`` as the measures run it (the row keeps the name the summary in
  BENCHMARKS.md reads). It counts accuracies only as far as the search needs (a midpoint far beyond
  the target is decided after a chunk, or after one restart of the worst-case ascent), and on this
  device evaluates the perturbed copies one at a time on the CPU, all in one vmapped call per chunk
  elsewhere;
- vmapped (on the CPU only, unless --no-vmapped): the same with ``vectorize=True``, every copy of a
  stack in one vmapped call per chunk (functorch gradients for the ascent), to show what vmap buys
  on this machine;
- loop: the straightforward way, a deep copy perturbed in place, one draw (or restart) and one
  chunk at a time, every accuracy counted in full, gradients by ``loss.backward()``.

All use the same subset, draws and starts and the same search (``search_scale``), so they must find
the same scale; the table shows it, to 7 digits, and notes any relative difference above 1e-9. Forward and backward counts are network calls;
seconds are wall clock and process CPU time (the latter is steadier on a shared machine, but
inflated there too when 2 threads spin for 2 busy cores: compare --threads 1). The ratio is loop /
batched, measured in this run; the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icc_bench.config import PopulationSpec, load_spec
from icc_bench.data import load_dataset
from icc_bench.models import build_model
from icc_sharpness.perturb import (
    PassCount,
    SharpnessResult,
    alpha_prime,
    gaussian_noise,
    perturbed_parameter_names,
    sharpness_subset,
    sigma_prime,
    uniform_starts,
)
from icc_sharpness.search import search_scale
from icc_sharpness.settings import RandomPerturbationSettings, SharpnessSearchSettings, WorstCasePerturbationSettings

SEED = 0
QUICK = Path(__file__).resolve().parents[1] / "model_zoo" / "quick.toml"


def train_quick_base(spec: PopulationSpec, x: Tensor, y: Tensor, num_classes: int, epochs: int) -> nn.Module:
    """The quick population's base configuration (SGD, no dropout, no augmentation), plainly trained."""
    hp = spec.configurations()[0]
    torch.manual_seed(SEED)
    model = build_model(spec.architecture, hp, num_classes, tuple(x.shape[1:]))
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.learning_rate, momentum=0.9, weight_decay=hp.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(spec.schedule.milestones), spec.schedule.gamma)
    order = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=order).split(hp.batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return model.eval()


class LoopEvaluator:
    """The straightforward way: one deep copy, perturbed in place, one network call per chunk."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, settings: SharpnessSearchSettings) -> None:
        self.net = copy.deepcopy(model).eval()
        if settings.variant == "kernels_bn_batch_stats":
            for layer in self.net.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train()  # batch statistics; the copy's running buffers absorb the updates
        self.names = perturbed_parameter_names(model, settings.variant)
        self.params = dict(self.net.named_parameters())
        self.weights = {name: self.params[name].detach().clone() for name in self.names}
        n_chunks = math.ceil(len(x) / settings.batch_size)
        self.chunks = list(zip(x.tensor_split(n_chunks), y.tensor_split(n_chunks)))
        self.n = len(x)
        self.passes = PassCount()

    def load(self, values: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, value in values.items():
                self.params[name].copy_(value)

    @torch.no_grad()
    def accuracy(self) -> float:
        correct = 0
        for x, y in self.chunks:
            correct += int((self.net(x).argmax(1) == y).sum())
            self.passes.forward_calls += 1
            self.passes.forward_evaluations += 1
        return correct / self.n

    def gradients(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        self.net.zero_grad()
        F.cross_entropy(self.net(x), y).backward()
        self.passes.forward_calls += 1
        self.passes.backward_calls += 1
        self.passes.forward_evaluations += 1
        self.passes.backward_evaluations += 1
        return {name: self.params[name].grad for name in self.names}


def loop_search(
    evaluator: LoopEvaluator, settings: SharpnessSearchSettings, accuracy_at: Callable[[float], float], copies_averaged: int
):
    evaluator.load(evaluator.weights)
    reference = evaluator.accuracy()
    drop_step = 1 / (evaluator.n * copies_averaged)  # the drop is a count of samples (of every draw, for a mean)
    return search_scale(lambda scale, above: reference - accuracy_at(scale), settings, drop_step=drop_step)


def loop_sigma_prime(model, x, y, settings: RandomPerturbationSettings, generator) -> tuple[float, PassCount]:
    indices = sharpness_subset(len(x), settings.sharpness_samples, generator)
    ev = LoopEvaluator(model, x[indices], y[indices], settings)
    noise = gaussian_noise(ev.weights, ev.names, settings.mc_samples, generator)

    def accuracy_at(sigma: float) -> float:
        accuracies = []
        for draw in range(settings.mc_samples):
            ev.load({n: w + torch.sqrt(sigma**2 * w**2 + settings.eps**2) * noise[n][draw] for n, w in ev.weights.items()})
            accuracies.append(ev.accuracy())
        return sum(accuracies) / len(accuracies)

    return loop_search(ev, settings, accuracy_at, settings.mc_samples).value, ev.passes


def loop_alpha_prime(model, x, y, settings: WorstCasePerturbationSettings, generator) -> tuple[float, PassCount]:
    indices = sharpness_subset(len(x), settings.sharpness_samples, generator)
    ev = LoopEvaluator(model, x[indices], y[indices], settings)
    starts = uniform_starts(ev.weights, ev.names, settings.restarts, generator)

    def accuracy_at(alpha: float) -> float:
        box = {n: alpha * w.abs() + settings.eps for n, w in ev.weights.items()}
        accuracies = []
        for restart in range(settings.restarts):
            offsets = {n: box[n] * starts[n][restart] for n in ev.names}
            for step in range(settings.ascent_steps):
                ev.load({n: ev.weights[n] + u for n, u in offsets.items()})
                grads = ev.gradients(*ev.chunks[step % len(ev.chunks)])
                for n, r in box.items():
                    offsets[n] = torch.minimum(torch.maximum(offsets[n] + settings.step_fraction * r * grads[n].sign(), -r), r)
            ev.load({n: ev.weights[n] + u for n, u in offsets.items()})
            accuracies.append(ev.accuracy())
        return min(accuracies)

    return loop_search(ev, settings, accuracy_at, 1).value, ev.passes


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: quick's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-vmapped", action="store_true", help="skip the vmapped rows on the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print("load average (1, 5, 15 min) at start: {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()))
    spec = load_spec(QUICK)
    data = load_dataset(spec.dataset)
    x, y = data.x_train, data.y_train
    epochs = args.epochs or spec.schedule.epochs
    (model, train_s, _) = timed(lambda: train_quick_base(spec, x, y, data.num_classes, epochs))
    with torch.no_grad():
        train_acc = float((model(x).argmax(1) == y).float().mean())
    print(
        f"quick base configuration: {spec.architecture.name} width {spec.architecture.base_width}, {len(x)} "
        f"{spec.dataset.name} images {tuple(x.shape[1:])}, {epochs} epochs in {train_s:.1f} s, "
        f"training accuracy {train_acc:.3f}, {torch.get_num_threads()} threads"
    )

    cases = (
        ("inv_sigma_prime", sigma_prime, loop_sigma_prime, RandomPerturbationSettings(variant="all_params_bn_eval")),
        ("inv_sigma_dprime", sigma_prime, loop_sigma_prime, RandomPerturbationSettings(variant="kernels_bn_batch_stats")),
        ("inv_alpha_prime", alpha_prime, loop_alpha_prime, WorstCasePerturbationSettings(variant="all_params_bn_eval")),
        ("inv_alpha_dprime", alpha_prime, loop_alpha_prime, WorstCasePerturbationSettings(variant="kernels_bn_batch_stats")),
    )
    header = f"{'measure':17s} {'impl':8s} {'scale':>13s} {'evals':>5s} {'fwd':>6s} {'bwd':>6s} {'wall s':>7s} {'cpu s':>7s}"
    print(header)
    print("-" * len(header))
    show_vmapped = not args.no_vmapped and next(model.parameters()).device.type == "cpu"
    total_wall = total_cpu = 0.0
    for name, batched_fn, loop_fn, settings in cases:
        result, b_wall, b_cpu = timed(partial(batched_fn, model, x, y, settings, torch.Generator().manual_seed(SEED)))
        assert isinstance(result, SharpnessResult)
        (loop_scale, loop_passes), l_wall, l_cpu = timed(
            partial(loop_fn, model, x, y, settings, torch.Generator().manual_seed(SEED))
        )
        total_wall, total_cpu = total_wall + b_wall, total_cpu + b_cpu
        p = result.passes
        note = "" if result.search.converged else "  (not converged: see the search's degenerate answers)"
        print(
            f"{name:17s} {'batched':8s} {result.scale:13.7g} {result.search.evaluations:5d} {p.forward_calls:6d} "
            f"{p.backward_calls:6d} {b_wall:7.2f} {b_cpu:7.2f}{note}"
        )
        if show_vmapped:
            run = partial(batched_fn, model, x, y, settings, torch.Generator().manual_seed(SEED), vectorize=True)
            vmapped, v_wall, v_cpu = timed(run)
            v = vmapped.passes
            print(
                f"{'':17s} {'vmapped':8s} {vmapped.scale:13.7g} {vmapped.search.evaluations:5d} {v.forward_calls:6d} "
                f"{v.backward_calls:6d} {v_wall:7.2f} {v_cpu:7.2f}"
            )
        print(
            f"{'':17s} {'loop':8s} {loop_scale:13.7g} {'':5s} {loop_passes.forward_calls:6d} "
            f"{loop_passes.backward_calls:6d} {l_wall:7.2f} {l_cpu:7.2f}"
            # The loop averages per-draw accuracies, the plugin counts: the last float bits may differ.
            + (
                ""
                if math.isclose(loop_scale, result.scale, rel_tol=1e-9)
                else f"  (differs by {loop_scale / result.scale - 1:+.1e})"
            )
        )
        print(
            f"{'':17s} {'ratio':8s} {'':13s} {'':5s} "
            f"{loop_passes.forward_calls / p.forward_calls:6.1f} "
            f"{(loop_passes.backward_calls / p.backward_calls) if p.backward_calls else float('nan'):6.1f} "
            f"{l_wall / b_wall:7.2f} {l_cpu / b_cpu:7.2f}"
        )
    print(f"all four measures, batched: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU (target: <= 30 s on 2 cores)")
    print("load average (1, 5, 15 min) at end: {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
