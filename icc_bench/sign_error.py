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


def _environments(hp: pd.DataFrame, axes: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Every environment of the models in ``hp``, flattened into its seed pairs.

    Returns ``(env_axis, first, second, env_of_pair, repeated)``: the axis index of each
    environment, the two models of each seed pair and its environment, and whether any
    configuration has several seeds.
    """
    config = hp.groupby(list(axes), sort=True, dropna=False).ngroup().to_numpy()
    n_configs = int(config.max()) + 1 if len(config) else 0
    members = [np.nonzero(config == c)[0] for c in range(n_configs)]
    values = hp[list(axes)].to_numpy()[[m[0] for m in members]] if n_configs else np.zeros((0, len(axes)))  # one row per config
    codes = np.stack([pd.factorize(values[:, k])[0] for k in range(len(axes))], axis=1) if n_configs else np.zeros((0, len(axes)))
    differ = codes[:, None, :] != codes[None, :, :]  # (C, C, axes)
    x, y = np.nonzero(np.triu(differ.sum(axis=2) == 1, k=1))
    env_axis = np.argmax(differ[x, y], axis=1)
    first, second, env_of_pair = [], [], []
    for e, (cx, cy) in enumerate(zip(x, y)):
        i, j = np.meshgrid(members[cx], members[cy], indexing="ij")
        first.append(i.ravel())
        second.append(j.ravel())
        env_of_pair.append(np.full(i.size, e))
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return env_axis, cat(first), cat(second), cat(env_of_pair), any(len(m) > 1 for m in members)


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
    env_axis, env_first, env_second, env_of_pair, repeated = _environments(hp, tuple(axes))
    threshold = (12.0 if repeated else 1.0) if min_ess is None else float(min_ess)
    loss = (1.0 - pairwise_sign_of(m[env_first], m[env_second]) * pairwise_sign_of(g[env_first], g[env_second])) / 2.0
    w = noise_weight(g[env_first] - g[env_second], n_test)
    n_env = len(env_axis)
    sum_w = np.bincount(env_of_pair, weights=w, minlength=n_env)
    sum_w2 = np.bincount(env_of_pair, weights=w**2, minlength=n_env)
    sum_wl = np.bincount(env_of_pair, weights=w * loss, minlength=n_env)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.where(sum_w > 0, sum_w**2 / np.where(sum_w2 > 0, sum_w2, 1.0), 0.0)
        env_loss = sum_wl / np.where(sum_w > 0, sum_w, 1.0)
    kept_env = (sum_w > 0) & (ess >= threshold)
    per_axis_losses = {a: env_loss[kept_env & (env_axis == i)].tolist() for i, a in enumerate(axes)}
    totals = {a: int((env_axis == i).sum()) for i, a in enumerate(axes)}
    robust, mean, kept = {}, {}, {}
    everything = [v for losses in per_axis_losses.values() for v in losses]
    for name, losses in [*per_axis_losses.items(), ("all", everything)]:
        robust[name] = max(losses) if losses else math.nan
        mean[name] = float(np.mean(losses)) if losses else math.nan
        kept[name] = len(losses)
    totals["all"] = sum(totals.values())
    return SignError(robust, mean, kept, totals, threshold, n_test)
