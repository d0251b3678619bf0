"""What the margin, norm, spectral and disagreement measures cost on one quick-sized model.

Each measure's seconds on the quick population's base model (VGG width 8, the synthetic
hierarchy), as a ratio to one forward pass of the whole training set through that model,
measured in the same run. Every measure gets a fresh context per repeat, so what a measure loads
itself (the epoch-0 weights, the siblings) is counted; best of ``--repeats``.

    python bench/baseline_measures_cost.py [--epochs N] [--repeats 3]

Trains two seeds of the base configuration into a temporary zoo, with the population's schedule
(or ``--epochs`` epochs without milestones: the cost hardly depends on it, some values do), each
with its initial weights as its epoch-0 snapshot.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from icc_bench import MeasureContext, compute_measure
from icc_bench.models import build_model
from icc_bench.plugins import load_plugins
from icc_bench.population import find_spec, load_job_dataset
from icc_bench.train import train_model
from icc_bench.zoo import Zoo

from _common import best_of

PLUGINS = ("icc_margins", "icc_norms", "icc_spectral", "icc_disagreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="quick")
    parser.add_argument("--epochs", type=int, default=None, help="default: the population's schedule")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = find_spec(args.population)
    data = load_job_dataset(spec.dataset, None)
    hp = spec.configurations()[0]
    schedule = spec.schedule.model_copy(update={"save_epochs": ()})
    if args.epochs is not None:
        schedule = schedule.model_copy(update={"epochs": args.epochs, "milestones": ()})
    zoo = Zoo(tempfile.mkdtemp(prefix="baseline_cost_"))
    for seed in (0, 1):
        torch.manual_seed(seed)  # train_model seeds the same way: this is its initialization
        initial = build_model(spec.architecture, hp, data.num_classes, data.input_shape).state_dict()
        result = train_model(spec.architecture, hp, schedule, data, seed=seed, device="cpu")
        record = {
            "model_id": f"base_s{seed}", "seed": seed, "hyperparams": hp.model_dump(mode="json"),
            "architecture": spec.architecture.model_dump(mode="json"), "dataset": spec.dataset.model_dump(mode="json"),
            "num_classes": data.num_classes, "input_shape": list(data.input_shape),
        }
        zoo.write_model(record, result.state_dict, snapshots={0: initial})
        print(f"trained base_s{seed}: {result.epochs_run} epochs, train accuracy {result.train_accuracy:.3f}, test {result.test_accuracy:.3f}")

    def context() -> MeasureContext:
        model, record = zoo.load_model("base_s0")
        return MeasureContext(model, data, hp, seed=0, record=record, zoo=zoo)

    ctx = context()
    n_train, n_test = len(data.y_train), len(data.y_test)

    def forward() -> None:
        with torch.no_grad():
            for chunk in ctx.dataset.x_train.split(500):
                ctx.model(chunk)

    reference = best_of(args.repeats, forward)
    print(f"model: {spec.architecture.name} width {spec.architecture.base_width}, {sum(p.numel() for p in ctx.model.parameters())} parameters; "
          f"{n_train} training images, {n_test} test images (the disagreement inputs: no held-out split here)")
    print(f"reference: one forward pass of the {n_train} training images: {reference * 1000:.1f} ms (best of {args.repeats})")
    print()
    print(f"{'measure':<18} {'value':>12} {'seconds':>9}  ratio to the forward pass")
    plugins = load_plugins(entry_points=False)
    for measure in plugins.measures:
        if measure.plugin is None or measure.plugin.name not in PLUGINS:
            continue
        value = compute_measure(measure, context())
        seconds = best_of(args.repeats, lambda m=measure: compute_measure(m, context()))
        print(f"{measure.name:<18} {value:>12.5g} {seconds:>9.4f}  ratio {measure.name}: {seconds / reference:.1f}x")

    from icc_spectral.esd import spectral_report

    print()
    print("spectral report of the model (layers left out of htsr_alpha and htsr_alpha_hat say why):")
    for layer in spectral_report(ctx.model):
        fit = f"alpha {layer.fit.alpha:.2f}, x_min {layer.fit.xmin:.3g}, tail {layer.fit.n_tail}" if layer.fit else f"not fitted: {layer.skipped}"
        print(f"  {layer.name:<20} {layer.n_eigenvalues:>5} eigenvalues, lambda_max {layer.lambda_max:.3g}: {fit}")


if __name__ == "__main__":
    main()
