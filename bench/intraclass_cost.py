"""What c1-c4 cost on one model, in forward passes over the probe sample.

The probe's forward pass is paid once per model and shared by every measure; the question is what
the four measures add on top. Target: c1-c4 together cost less than two more forward passes.

    python bench/intraclass_cost.py [--population quick] [--runs-dir runs] [--repeats 5]

Trains the population's first model into the runs folder if it is not there yet.
"""

from __future__ import annotations

import argparse

import torch

from icc_bench.plugins import load_plugins
from icc_bench.probe import compute_representations
from _common import best_of, first_model
from icc_intraclass.kernels import c1_selectivity, c2_silhouette, c3_variance_ratio, c4_distance_spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="quick")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    spec, model, record, data = first_model(args.population, args.runs_dir)
    model_id = record["model_id"]
    x = data.x_train  # the default probe: the whole training set
    settings = {m.name: m.settings for m in load_plugins(entry_points=False).measures.list("c*")}
    for name, overrides in spec.measure_settings.items():
        if name in settings:
            settings[name] = settings[name].model_copy(update=overrides)

    forward = best_of(args.repeats, lambda: compute_representations(model, x))
    reps = compute_representations(model, x)
    fine, f2c, labels = data.fine_train, data.fine_to_coarse, data.y_train

    def opts(name):
        return settings[name].model_dump(exclude={"probe_samples"})

    kernels = {
        "c1": lambda: c1_selectivity(reps.preactivations, fine, f2c, **opts("c1")),
        "c2": lambda: c2_silhouette(reps.activations, fine, f2c, **opts("c2")),
        "c3": lambda: c3_variance_ratio(reps.preactivations, labels, **opts("c3")),
        "c4": lambda: c4_distance_spread(reps.preactivations, labels, **opts("c4")),
    }
    print(f"model {model_id} ({record['layers']} layers, {sum(r.shape[1] for r in reps.preactivations)} neurons), "
          f"probe {len(x)} samples, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'':<28}{'seconds':>10}{'forward passes':>16}")
    print(f"{'probe forward pass':<28}{forward:>10.4f}{1.0:>16.2f}")
    total = 0.0
    for name, fn in kernels.items():
        t = best_of(args.repeats, fn)
        total += t
        print(f"{name:<28}{t:>10.4f}{t / forward:>16.2f}")
    print(f"{'c1-c4 together':<28}{total:>10.4f}{total / forward:>16.2f}   (target < 2)")


if __name__ == "__main__":
    main()
