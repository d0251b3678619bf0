"""What the bootstrap costs: scoring a mini-sized population with intervals against without.

    python bench/scoring_bootstrap.py [--draws 1000] [--models 192] [--test 10000] [--rows 12]

A population of the paper's 192-configuration grid (one seed), each model with a 0/1 correctness
vector over a shared test set, and ``--rows`` measures (mini's eight plus the four reference rows),
scored the way :func:`icc_bench.scores.score_zoo` scores them: per row, granulated Kendall and CMI
(the point values, the reference) and, with the bootstrap, the B-draw distributions of every psi,
Psi and CMI from one shared set of draws, plus the sign-error. Two target layouts: ``spread``
(test accuracies spread over 0.25-0.9, like an uncalibrated mini) and ``clustered`` (all within
0.88-0.91, where many target orders flip between draws, the expensive case for CMI).

Prints seconds for the point scores alone and with the bootstrap, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icc_bench.config import AXES, COMPOSITE_AXES, Grid
from icc_bench.scoring import conditional_mutual_information, granulated_kendall
from icc_bench.sign_error import sign_error
from icc_bench.uncertainty import (
    BootstrapSettings,
    cmi_draws,
    granulated_kendall_draws,
    interval,
    make_draws,
    paired_fraction,
)


def paper_grid() -> pd.DataFrame:
    grid = Grid(
        lr_wd=[(0.01, 0.0), (0.032, 0.0), (0.1, 0.0), (0.1, 4e-5)], batch_size=[100, 300], optimizer=["sgd", "adam"],
        dropout_aug=[(0.0, True), (0.0, False), (0.2, False), (0.4, False)], width_depth=[(1.0, 1.0), (1.5, 1.0), (1.0, 1.5)],
    )
    return pd.DataFrame([hp.axis_values() for hp in grid.expand()])


def score(values: list[np.ndarray], y: np.ndarray, hp: pd.DataFrame, correct: np.ndarray, draws: int) -> float:
    """Seconds to score every row as score_zoo does (point values; with draws > 0, the bootstrap too)."""
    axes = list(AXES)
    t0 = time.perf_counter()
    samples = []
    for v in values:
        granulated_kendall(v, y, hp, axes=tuple(axes))
        conditional_mutual_information(v, y, hp, composite_axes=COMPOSITE_AXES)
    if draws:
        shared = make_draws(y, hp, axes, BootstrapSettings(draws=draws), correct=correct)
        for v in values:
            per_axis, total = granulated_kendall_draws(v, shared, hp, axes)
            cmi = cmi_draws(v, shared, hp, COMPOSITE_AXES)
            [interval(d, 0.9) for d in [*per_axis.values(), total, cmi]]
            sign_error(v, y, hp, axes, n_test=correct.shape[1])
            samples.append(total)
        [paired_fraction(a, b) for a in samples for b in samples]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--test", type=int, default=10_000)
    args = parser.parse_args()
    hp = paper_grid()
    n = len(hp)
    rng = np.random.default_rng(0)
    print(f"{n} models (the paper's grid), {args.test} test images, {args.rows} rows, B = {args.draws}; "
          f"{os.cpu_count()} CPUs; load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'layout':<10} {'point (s)':>10} {'bootstrap (s)':>14} {'ratio':>8}")
    for layout, low, high in (("spread", 0.25, 0.9), ("clustered", 0.88, 0.91)):
        accuracy = rng.uniform(low, high, size=n)
        correct = rng.random((n, args.test)) < accuracy[:, None]
        y = correct.mean(axis=1)
        values = [y + rng.normal(0, s, size=n) for s in np.linspace(0.01, 1.0, args.rows)]
        point = min(score(values, y, hp, correct, 0) for _ in range(3))
        boot = score(values, y, hp, correct, args.draws)
        print(f"{layout:<10} {point:>10.3f} {boot:>14.2f} {boot / point:>7.0f}x")
        print(f"ratio ({layout}, bootstrap seconds / point seconds): {boot / point:.0f}x; bootstrap {boot:.2f} s")


if __name__ == "__main__":
    main()
