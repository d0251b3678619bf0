"""Robust sign-error (Dziugaite et al. 2020), per axis: lower is better (SPEC §5).

An *environment* e is a pair of configurations that differ in exactly one hyperparameter axis
(e.g. two models that differ only in their learning rate). For every pair of their seeds (one model
from each configuration) the sign-error loss is

    loss = (1 - sign(dC) sign(dg)) / 2

with dC the difference of the (oriented) measure and dg of the target: 0 when the measure orders
the two models as the target does, 1 when it inverts them, 1/2 when either is tied. Dziugaite et al.
order the two configurations; the loss is symmetric in that order, so each unordered pair is one
environment here and the maximum and mean are unchanged.

A difference in test accuracy smaller than the test set's sampling noise says nothing about
generalization, so each pair is weighted by Dziugaite et al.'s Monte-Carlo noise filter

    psi = max(0, 1 - 2 exp(-2 n (|dg| / 2)^2))^2,    w = (psi - 1/2)_+

with n the number of test images (Hoeffding: psi bounds the probability that the sign of dg is
right when both accuracies are estimated from n images). The environment's loss is
L_e = sum(w loss) / sum(w), and an environment is left out when its effective sample size
(sum w)^2 / sum(w^2) is below ``min_ess``: default 12 when configurations have repeated seeds
(Dziugaite et al.'s choice), and 1 with a single seed, where every environment is one pair: it is
kept exactly when that pair's accuracy difference clears the noise filter (w > 0).

Reported per axis: the maximum of L_e over the axis's environments (the robust sign-error, the
worst environment) and their mean, with the number of environments kept; and the same over all
axes together.

Reference
---------
G. K. Dziugaite, A. Drouin, B. Neal, N. Rajkumar, E. Caballero, L. Wang, I. Mitliagkas, D. M. Roy.
In search of robust measures of generalization. NeurIPS 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from icc_bench.uncertainty import pairwise_sign_of


@dataclass(frozen=True)
class SignError:
    """Per axis (and ``"all"``): robust (max) and mean sign-error over the environments kept."""

    robust: dict[str, float]
    mean: dict[str, float]
    environments: dict[str, int]  # kept
    environments_total: dict[str, int]
    min_ess: float
    n_test: int
    extra: dict[str, float] = field(default_factory=dict)


def noise_weight(dg: np.ndarray, n_test: int) -> np.ndarray:
    """w = (psi - 1/2)_+ with psi = max(0, 1 - 2 exp(-2 n (|dg|/2)^2))^2 (see the module docstring)."""
    psi = np.maximum(0.0, 1.0 - 2.0 * np.exp(-2.0 * n_test * (np.abs(dg) / 2.0) ** 2)) ** 2
    return np.maximum(psi - 0.5, 0.0)


def sign_error(
    values: np.ndarray,
    target: np.ndarray,
    hyperparams: pd.DataFrame,
    axes: list[str],
    *,
    n_test: int,
    higher_is_better: bool = True,
    min_ess: float | None = None,
) -> SignError:
    """The robust and mean sign-error of one measure on one population.

    Parameters
    ----------
    values : ndarray of shape (n,)
        The measure (NaN: no value; such models are left out).
    target : ndarray of shape (n,)
        The target, higher = better.
    hyperparams : DataFrame
        One row per model, a column per axis; rows with equal axes are seeds of one configuration.
    axes : list of str
    n_test : int
        Test images behind each accuracy (the noise filter's n).
    higher_is_better : bool
        The measure's direction (it is oriented first, so the loss is 0 for a right ordering).
    min_ess : float, optional
        Effective-sample-size threshold; default 12 with repeated seeds, 1 without.
    """
    if n_test < 1:
        raise ValueError(f"sign_error needs the number of test images behind each accuracy, got n_test={n_test}")
    m = np.asarray(values, dtype=np.float64)
    m = m if higher_is_better else -m
    g = np.asarray(target, dtype=np.float64)
    keep = np.isfinite(m) & np.isfinite(g)
    hp = hyperparams[axes].reset_index(drop=True)[keep].reset_index(drop=True)
    m, g = m[keep], g[keep]
    configs = hp.groupby(axes, sort=True, dropna=False).indices  # config tuple -> row positions
    keys = list(configs)
    as_tuple = (lambda k: k if isinstance(k, tuple) else (k,))  # pandas gives scalars for one axis
    repeated = any(len(v) > 1 for v in configs.values())
    threshold = (12.0 if repeated else 1.0) if min_ess is None else float(min_ess)
    per_axis_losses: dict[str, list[float]] = {a: [] for a in axes}
    totals = {a: 0 for a in axes}
    for x in range(len(keys)):
        for y in range(x + 1, len(keys)):
            differing = [a for a, u, v in zip(axes, as_tuple(keys[x]), as_tuple(keys[y])) if u != v]
            if len(differing) != 1:
                continue
            axis = differing[0]
            totals[axis] += 1
            i, j = np.meshgrid(configs[keys[x]], configs[keys[y]], indexing="ij")
            i, j = i.ravel(), j.ravel()
            loss = (1.0 - pairwise_sign_of(m[i], m[j]) * pairwise_sign_of(g[i], g[j])) / 2.0
            w = noise_weight(g[i] - g[j], n_test)
            if w.sum() <= 0:
                continue
            ess = w.sum() ** 2 / (w**2).sum()
            if ess < threshold:
                continue
            per_axis_losses[axis].append(float((w * loss).sum() / w.sum()))
    robust, mean, kept = {}, {}, {}
    everything = [v for losses in per_axis_losses.values() for v in losses]
    for name, losses in [*per_axis_losses.items(), ("all", everything)]:
        robust[name] = max(losses) if losses else math.nan
        mean[name] = float(np.mean(losses)) if losses else math.nan
        kept[name] = len(losses)
    totals["all"] = sum(totals.values())
    return SignError(robust, mean, kept, totals, threshold, n_test)
