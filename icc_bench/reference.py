"""Reference rows: the ceiling and the floor a population's target allows (SPEC §5).

A score means little until the reader knows what a perfect and a useless measure would score on
the same models with the same noisy target. Each reference row is a "measure" computed from the
records, scored with the same granulated Kendall, intervals and paired comparisons as any measure,
shown in its own family ``reference`` and never counted as "best":

- ``oracle_noise_0.01`` and ``oracle_noise_0.05``: the target itself plus seeded Gaussian noise of
  standard deviation 0.01 and 0.05 (Jiang et al. 2020 add such noise to calibrate their scores). A
  measure as good as the target up to that noise scores about here.
- ``oracle_heldout``: each model's accuracy on an independent held-out split of the dataset,
  drawn like the test set (minus the training accuracy for the generalization-gap target). It
  predicts the test accuracy as well as any measure can hope to without seeing the test set: the
  ceiling the test set's sampling noise allows. Only datasets that can draw a third split have it
  (the synthetic hierarchy and digits); CIFAR's test set is its only held-out data, so CIFAR
  populations have no such row.
- ``random``: a seeded uniform number per model; the floor, whose interval must contain 0.

Every draw is seeded by the reference's name, the evaluation seed and the model id, so a model's
reference values do not change when other models join the population.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

REFERENCE_FAMILY = "reference"
NOISE_LEVELS: tuple[float, ...] = (0.01, 0.05)


@dataclass(frozen=True)
class Reference:
    """One reference row's values (aligned with the models), label and one-line description."""

    name: str
    label: str
    description: str
    values: np.ndarray


def _rng(name: str, seed: int, model_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{name}:{seed}:{model_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def reference_rows(
    model_ids: list[str], target: np.ndarray, *, seed: int = 0, heldout_target: np.ndarray | None = None
) -> list[Reference]:
    """The reference rows of a population.

    Parameters
    ----------
    model_ids : list of str
        The models, in the order of ``target``.
    target : ndarray of shape (n,)
        The point target, higher = better (see :func:`icc_bench.scoring.target_values`).
    seed : int
        The evaluation seed.
    heldout_target : ndarray of shape (n,), optional
        The same target computed on the held-out split; ``oracle_heldout`` is given only when
        every model has one (no NaN).

    Returns
    -------
    list of Reference
        Higher is better for every row.
    """
    rows = []
    for s in NOISE_LEVELS:
        name = f"oracle_noise_{s:g}"
        noise = np.array([_rng(name, seed, m).normal(0.0, s) for m in model_ids])
        rows.append(Reference(name, f"oracle + N(0, {s:g}²)", f"the target plus seeded Gaussian noise of std {s:g}", target + noise))
    if heldout_target is not None and len(heldout_target) and np.all(np.isfinite(heldout_target)):
        rows.append(Reference("oracle_heldout", "oracle (held-out)", "the target measured on an independent held-out split", heldout_target))
    values = np.array([_rng("random", seed, m).uniform() for m in model_ids])
    rows.append(Reference("random", "random", "a seeded uniform number per model (the floor)", values))
    return rows
