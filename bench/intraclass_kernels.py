"""Exact fast forms of SPEC §2 against the plain O(n^2 d) computations they replace.

    python bench/intraclass_kernels.py [--sizes 2500 10000] [--dim 256] [--clusters 10] [--threads 1]

(with icc-bench installed, or ``PYTHONPATH=plugins``). For each sample size n it times, best of
``--repeats`` runs on the same data:

- silhouette: ``silhouette_samples_cosine`` (O(n K d)) against
  ``sklearn.metrics.silhouette_samples(metric="cosine")`` (an n x n distance matrix);
- spread: ``pairwise_cosine_distance_std`` (O(n d^2)) against scikit-learn's ``cosine_distances``
  followed by the standard deviation of its upper triangle,

and prints a table with both times, the speedup and the largest absolute difference. The data are
ReLU'd Gaussian clusters in float64 with a few zero rows, like a layer's activations.

Both sides run on ``--threads`` threads (torch's and the BLAS under numpy / scikit-learn), one by
default: on a shared host, multi-threaded timings of millisecond kernels mostly measure the
scheduler (a parallel region waits a time slice for a busy core).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import sklearn
import torch
from sklearn.metrics import silhouette_samples
from sklearn.metrics.pairwise import cosine_distances
from threadpoolctl import threadpool_limits

from icc_intraclass.kernels import pairwise_cosine_distance_std, silhouette_samples_cosine


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Smallest wall time over ``repeats`` calls (the least disturbed by other processes), and
    the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def make_activations(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, size=n)
    centres = rng.normal(size=(clusters, dim))
    x = np.maximum(centres[labels] + 1.5 * rng.normal(size=(n, dim)), 0.0)  # (n, dim)
    x[rng.choice(n, size=max(1, n // 500), replace=False)] = 0.0  # zero rows: distance 1 to all
    return x, labels


def plain_spread(x: np.ndarray) -> float:
    distances = cosine_distances(x)  # (n, n)
    return float(distances[np.triu_indices(x.shape[0], k=1)].std())


def run(args: argparse.Namespace) -> None:
    print(
        f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}; float64, d = {args.dim}, {args.clusters} clusters, "
        f"best of {args.repeats}"
    )
    header = f"{'kernel':<11} {'n':>6} {'fast (s)':>10} {'reference (s)':>14} {'speedup':>9} {'max |diff|':>11}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        x, labels = make_activations(n, args.dim, args.clusters, seed=n)
        x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)

        fast_s, fast = best_time(partial(silhouette_samples_cosine, x_torch, labels_torch), args.repeats)
        ref_s, ref = best_time(partial(silhouette_samples, x, labels, metric="cosine"), args.repeats)
        difference = float(np.abs(fast.numpy() - ref).max())
        print(f"{'silhouette':<11} {n:>6} {fast_s:>10.4f} {ref_s:>14.4f} {ref_s / fast_s:>8.1f}x {difference:>11.1e}")

        fast_s, fast = best_time(partial(pairwise_cosine_distance_std, x_torch), args.repeats)
        ref_s, ref = best_time(partial(plain_spread, x), args.repeats)
        difference = abs(fast - ref)
        print(f"{'spread':<11} {n:>6} {fast_s:>10.4f} {ref_s:>14.4f} {ref_s / fast_s:>8.1f}x {difference:>11.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        run(args)


if __name__ == "__main__":
    main()
