"""What each PGDL winners' measure (icc_pgdl) costs on one model, in forward passes over the training set.

    python bench/pgdl_cost.py [--population quick] [--runs-dir runs] [--repeats 3]

The reference, timed in the same run, is one forward pass of the model over its whole training set
(logits, eval mode, no gradients), run before every measure so that both see the same load. For
each measure: its wall time and process CPU time (best of ``--repeats``; the reference's best of
all its runs), both as a multiple of the reference, and the images it sends into the network
(``pgdl_dbi`` stops each pass at the first convolution, so its images are cheaper than the
reference's). Settings are the measures' defaults with the population's ``[measure_settings]``.
Trains the population's first model into the runs folder if it is not there yet.
"""

from __future__ import annotations

import argparse
import time

import torch

from icc_bench import MeasureContext, compute_measure
from icc_bench.config import HyperParams
from icc_bench.plugins import load_plugins

from _common import first_model


def timed(fn) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def images_through(model: torch.nn.Module, fn) -> int:
    """Images that enter ``model``'s forward during ``fn()``."""
    count = [0]
    handle = model.register_forward_pre_hook(lambda _m, args: count.__setitem__(0, count[0] + len(args[0])))
    try:
        fn()
    finally:
        handle.remove()
    return count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default="quick")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec, model, record, data = first_model(args.population, args.runs_dir)
    model_id = record["model_id"]
    ctx = MeasureContext(model, data, HyperParams.model_validate(record["hyperparams"]), seed=0, record=record)
    measures = [
        m.with_settings(**spec.measure_settings.get(m.name, {}))
        for m in load_plugins(entry_points=False).measures
        if m.name.startswith("pgdl_")
    ]

    def forward() -> None:
        with torch.no_grad():
            model(data.x_train)

    values = {m.name: compute_measure(m, ctx) for m in measures}  # also warms every code path up
    images = {m.name: images_through(model, lambda m=m: compute_measure(m, ctx)) for m in measures}
    # Interleaved: the reference runs before every measure, so that both see the same load, and the
    # short reference gets many tries at its best time. Best (smallest) of each, wall and CPU apart.
    runs: dict[str, list[tuple[float, float]]] = {"reference": []}
    for _ in range(args.repeats):
        for measure in measures:
            runs["reference"].append(timed(forward))
            runs.setdefault(measure.name, []).append(timed(lambda m=measure: compute_measure(m, ctx)))
    best = {name: (min(w for w, _ in times), min(c for _, c in times)) for name, times in runs.items()}
    reference_wall, reference_cpu = best["reference"]
    print(f"model {model_id} ({sum(p.numel() for p in model.parameters())} parameters), {len(data.y_train)} training "
          f"images {tuple(data.x_train.shape[1:])}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'':<26}{'wall s':>9}{'CPU s':>9}{'x forward (wall)':>18}{'x forward (CPU)':>17}{'images':>9}  value")
    print(f"{'forward pass (reference)':<26}{reference_wall:>9.4f}{reference_cpu:>9.4f}{1.0:>18.1f}{1.0:>17.1f}"
          f"{len(data.y_train):>9}")
    for name, value in values.items():
        wall, cpu = best[name]
        print(f"{name:<26}{wall:>9.4f}{cpu:>9.4f}{wall / reference_wall:>18.1f}{cpu / reference_cpu:>17.1f}"
              f"{images[name]:>9}  {value:.6g}")


if __name__ == "__main__":
    main()
