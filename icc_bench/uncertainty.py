"""How sure a score is: a paired percentile bootstrap over groups and test images (SPEC §5).

A granulated Kendall score rests on a few groups of models per axis and on test accuracies that
are themselves estimates from a finite test set. Both are sources of noise the reader must see, so
every psi_h, Psi and CMI comes with a percentile interval from one bootstrap that resamples, in each
draw b = 1..B and *jointly*:

(a) the groups of each axis, through their configurations: the C configurations of the population
    are drawn C times with replacement (multinomial counts w_c; a configuration's seeds share its
    count, so they stay together), and every group of every axis is scored on the drawn
    configurations: its tau weights each pair of models by the product of their counts, and
    psi_h^b is the mean of the groups' tau weighted by each group's mean count. Drawing the
    configurations once for all axes, rather than each axis's groups independently, keeps the
    correlation between axes that share models: a model sits in one group of every axis, so the
    psi_h of one population rise and fall together, and drawing the axes independently
    understates the spread of Psi (on the paper's 192-model grid a random measure's 90% interval
    of Psi then covered 0 in 14 of 20 seeded populations, instead of about 18);
(b) the test images: n_test indices drawn with replacement, the *same* draw for every model (all
    models share the test set, so their accuracies are paired), and each model's target is
    recomputed from its stored test predictions. This puts the target's sampling noise into the
    interval. A zoo without stored predictions resamples groups only, and says so.

Psi^b is the mean over axes of psi_h^b. CMI^b recomputes PGDL's conditional mutual information on
the resampled targets; it conditions on the whole grid of composite axes, so (a) does not apply to
it and its interval resamples the test images only.

Every measure of a population sees the same draws (same groups, same images), which makes
comparisons paired: :func:`paired_fraction` is the fraction of draws in which one measure's score
exceeds another's (ties count one half), and two measures are *not distinguishable* at level L
when that fraction lies strictly between (1 - L)/2 and (1 + L)/2, i.e. when the central L interval
of their paired difference contains 0.

The interval is the percentile interval [q_{(1-L)/2}, q_{(1+L)/2}] of the B draws (default B =
1000, L = 0.9), over the draws where the score is defined. Draws are seeded: the same population,
values and settings give the same interval on any machine.

References
----------
B. Efron, R. Tibshirani. An Introduction to the Bootstrap, ch. 13 (percentile intervals), 1993.
Y. Jiang et al. Fantastic generalization measures and where to find them. ICLR 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icc_bench.scoring import _groups_along, normalized_cmi_from_counts, pairwise_sign


@dataclass(frozen=True)
class BootstrapSettings:
    """``draws`` = B (0 switches the bootstrap off), ``level`` the interval's coverage, ``seed``
    the seed of every draw."""

    draws: int = 1000
    level: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.draws < 0:
            raise ValueError(f"--bootstrap {self.draws}: the number of bootstrap draws must be 0 (off) or more")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"--ci {self.level}: the interval level must lie strictly between 0 and 1, e.g. 0.9")


@dataclass
class PopulationDraws:
    """The resamples shared by every measure of one population.

    Attributes
    ----------
    targets : ndarray of shape (n_models, B)
        The target of each model in each draw (the point target repeated when images are not
        resampled).
    weights : ndarray of shape (n_models, B)
        How many times each model's configuration is drawn in each draw (multinomial counts over
        the configurations; the seeds of a configuration share its count).
    groups : dict[str, list[ndarray]]
        Per axis, the row positions of the groups of models that differ only along that axis and
        in which it varies (as :func:`icc_bench.scoring.granulated_kendall` forms them).
    config : ndarray of shape (n_models,)
        The configuration of each model (models with equal axes are seeds of one configuration).
    images_resampled : bool
        Whether (b) applies: every model had stored test predictions on one shared test set.
    settings : BootstrapSettings
    """

    targets: np.ndarray
    weights: np.ndarray
    groups: dict[str, list[np.ndarray]]
    config: np.ndarray
    images_resampled: bool
    settings: BootstrapSettings

    @property
    def draws(self) -> int:
        return self.targets.shape[1]


def make_draws(
    target: np.ndarray,
    hyperparams: pd.DataFrame,
    axes: list[str],
    settings: BootstrapSettings,
    *,
    correct: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> PopulationDraws:
    """Draw the shared resamples of a population.

    Parameters
    ----------
    target : ndarray of shape (n_models,)
        The point target, higher = better.
    hyperparams : DataFrame
        One row per model, a column per axis.
    axes : list of str
    settings : BootstrapSettings
    correct : ndarray of shape (n_models, n_test) of bool, optional
        Whether each model classifies each test image correctly. When given, each draw's target
        is ``correct @ w / n_test + offset`` with w the multinomial counts of the resampled images.
    offset : ndarray of shape (n_models,), optional
        Added to the resampled test accuracy: 0 for the test-accuracy target, minus the training
        accuracy for the generalization-gap target (the training set is not resampled).
    """
    rng = np.random.default_rng(settings.seed)
    b = settings.draws
    if correct is not None:
        n_test = correct.shape[1]
        # Counts of each test image in each draw; float32 sums of 0/1 times counts are exact
        # integers below 2**24, so the resampled accuracies are exact fractions.
        counts = rng.multinomial(n_test, np.full(n_test, 1.0 / n_test), size=b).astype(np.float32)  # (B, n_test)
        targets = (correct.astype(np.float32) @ counts.T).astype(np.float64) / n_test  # (n, B)
        if offset is not None:
            targets += offset[:, None]
    else:
        targets = np.repeat(np.asarray(target, dtype=np.float64)[:, None], b, axis=1)
    hp = hyperparams[axes].reset_index(drop=True)
    config = hp.groupby(axes, sort=True, dropna=False).ngroup().to_numpy()
    n_configs = int(config.max()) + 1 if len(config) else 0
    drawn = rng.multinomial(n_configs, np.full(n_configs, 1.0 / max(n_configs, 1)), size=b)  # (B, n_configs)
    weights = drawn[:, config].T.astype(np.float64)  # (n, B)
    groups = {}
    for axis in axes:
        column = hp[axis].to_numpy()
        groups[axis] = [idx for idx in _groups_along(hp, axis, axes) if len(pd.unique(column[idx])) >= 2]
    return PopulationDraws(targets, weights, groups, config, correct is not None, settings)


def _within_group_pairs(groups: list[np.ndarray], valid: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, inside each group among the valid models, sorted by group.

    Returns ``(first, second, starts, defined)``: ``starts[g]`` is where group g's pairs begin (for
    ``np.add.reduceat``) and ``defined[g]`` says whether group g still qualifies once the invalid
    (NaN) models are left out: two models or more, and the axis varying among them.
    """
    first, second, starts, defined = [], [], [], []
    position = 0
    for idx in groups:
        kept = idx[valid[idx]]
        ok = len(kept) >= 2 and len(pd.unique(column[kept])) >= 2
        defined.append(ok)
        starts.append(position)
        if ok:
            i, j = np.nonzero(~np.eye(len(kept), dtype=bool))
            first.append(kept[i])
            second.append(kept[j])
            position += len(i)
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return cat(first), cat(second), np.asarray(starts, dtype=np.int64), np.asarray(defined, dtype=bool)


def group_taus(
    values: np.ndarray, targets: np.ndarray, groups: list[np.ndarray], column: np.ndarray, *,
    weights: np.ndarray | None = None, config: np.ndarray | None = None, variant: str = "tau_a",
) -> tuple[np.ndarray, np.ndarray]:
    """Kendall's tau of every group for every column of ``targets``, and each group's weight.

    ``values`` (n,) is the oriented measure (NaN = no value), ``targets`` (n, k), ``weights``
    (n, k) the models' draw counts (default 1). Over the group's ordered pairs, with
    s_m = sign(m_i - m_j), s_g = sign(g_i - g_j) and pair weight W = w_i w_j:
    tau_a = sum(W s_m s_g) / sum(W) and tau_b = sum(W s_m s_g) / sqrt(sum(W s_m^2) sum(W s_g^2)).
    With unit weights these are exactly :func:`icc_bench.scoring.kendall_tau`'s. A group is NaN in
    a column where no two of its drawn models lie in different configurations (the axis no longer
    varies), or, for tau_b, where either variable is constant; and where it no longer qualifies
    once NaN models are left out. The group's weight is the mean draw count of its valid models.

    Returns
    -------
    taus, group_weights : ndarrays of shape (G, k)
    """
    k = targets.shape[1]
    weights = np.ones_like(targets) if weights is None else weights
    config = np.arange(len(values)) if config is None else config
    valid = np.isfinite(values)
    first, second, starts, defined = _within_group_pairs(groups, valid, column)
    taus = np.full((len(groups), k), np.nan)
    group_weights = np.zeros((len(groups), k))
    if not len(first):
        return taus, group_weights
    s_m = pairwise_sign_of(values[first], values[second]).astype(np.float64)  # (P,)
    s_g = pairwise_sign_of(targets[first], targets[second]).astype(np.float64)  # (P, k)
    w = weights[first] * weights[second]  # (P, k)
    crossing = (config[first] != config[second]).astype(np.float64)  # pairs between two configurations
    at = starts[defined]
    numerator = np.add.reduceat(w * s_m[:, None] * s_g, at, axis=0)  # (G_defined, k)
    varies = np.add.reduceat(w * crossing[:, None], at, axis=0) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if variant == "tau_a":
            t = numerator / np.add.reduceat(w, at, axis=0)
        else:
            untied_m = np.add.reduceat(w * (s_m**2)[:, None], at, axis=0)
            untied_g = np.add.reduceat(w * s_g**2, at, axis=0)
            t = numerator / np.sqrt(untied_m * untied_g)
    t[~(np.isfinite(t) & varies)] = np.nan
    taus[defined] = t
    for g, idx in enumerate(groups):
        kept = idx[valid[idx]]
        if defined[g]:
            group_weights[g] = weights[kept].mean(axis=0)
    return taus, group_weights


def pairwise_sign_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sign(a - b) elementwise in {-1, 0, 1}, by comparison (two equal infinities tie)."""
    return (a > b).astype(np.int8) - (a < b).astype(np.int8)


@dataclass
class ScoreDraws:
    """The bootstrap distribution of one measure's scores: arrays of shape (B,), NaN where a draw
    leaves the score undefined."""

    per_axis: dict[str, np.ndarray]
    total: np.ndarray
    cmi: np.ndarray | None


def granulated_kendall_draws(
    values: np.ndarray, draws: PopulationDraws, hyperparams: pd.DataFrame, axes: list[str], *,
    variant: str = "tau_a", higher_is_better: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """psi_h^b per axis and Psi^b: each draw's groups scored on its targets and weights.

    psi_h^b = sum_g W_g tau_g / sum_g W_g over the groups defined in draw b, with W_g the mean draw
    count of the group's models (see :func:`group_taus`); with every count 1 this is the point
    psi_h.
    """
    m = np.asarray(values, dtype=np.float64)
    m = m if higher_is_better else -m
    hp = hyperparams[axes].reset_index(drop=True)
    per_axis = {}
    for axis in axes:
        groups = draws.groups[axis]
        if not groups:
            per_axis[axis] = np.full(draws.draws, np.nan)
            continue
        taus, weights = group_taus(m, draws.targets, groups, hp[axis].to_numpy(), weights=draws.weights,
                                   config=draws.config, variant=variant)  # (G, B) each
        weights = np.where(np.isfinite(taus), weights, 0.0)
        total_weight = weights.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_axis[axis] = np.where(total_weight > 0, (np.nan_to_num(taus) * weights).sum(axis=0) / total_weight, np.nan)
    total = _nanmean(np.stack(list(per_axis.values())), axis=0) if per_axis else np.full(draws.draws, np.nan)
    return per_axis, total


def cmi_draws(
    values: np.ndarray, draws: PopulationDraws, hyperparams: pd.DataFrame, composite_axes: tuple[tuple[str, ...], ...],
    *, higher_is_better: bool = True,
) -> np.ndarray:
    """CMI^b for each draw's targets (test images resampled; see the module docstring).

    The score of draw b is :func:`icc_bench.scoring.conditional_mutual_information` on
    ``draws.targets[:, b]``, computed for all draws at once. Per pair of composite axes, the
    count table of draw b is ``counts[b, u, g, m]`` over the ordered pairs of models (u their cell,
    g the target's sign symbol, m the measure's): the cells and the measure's symbols are fixed,
    so the table is a sparse (cell, m) x pairs indicator matrix times each draw's one-hot target
    signs. Pairs whose target order is the same in every draw are counted once for all draws.
    """
    from scipy import sparse

    m = np.asarray(values, dtype=np.float64)
    m = m if higher_is_better else -m
    keep = np.isfinite(m)
    n, b = int(keep.sum()), draws.draws
    if n < 2 or len(composite_axes) < 2:
        return np.full(b, np.nan)
    m = m[keep]
    hp = hyperparams.reset_index(drop=True)[keep].reset_index(drop=True)
    signs = _target_signs(draws, keep)
    first, second = signs.first, signs.second
    v_m = (pairwise_sign(m)[first, second] + 1).astype(np.int64)  # (P,) measure symbol of each ordered pair
    codes = [hp.groupby(list(c), sort=True).ngroup().to_numpy() for c in composite_axes]
    sizes = [int(c.max()) + 1 for c in codes]
    best = np.full(b, np.inf)
    any_defined = np.zeros(b, dtype=bool)
    for a in range(len(codes)):
        for c in range(a + 1, len(codes)):
            cell = np.ravel_multi_index(
                (codes[a][first], codes[a][second], codes[c][first], codes[c][second]), (sizes[a], sizes[a], sizes[c], sizes[c])
            )
            _, cell = np.unique(cell, return_inverse=True)
            n_cells = int(cell.max()) + 1
            # Pairs with one target order in every draw: counted once, the same table in every draw.
            steady = signs.steady
            fixed = np.bincount(cell[steady] * 9 + signs.steady_symbol * 3 + v_m[steady], minlength=n_cells * 9)
            counts = np.repeat(fixed.reshape(1, n_cells, 3, 3).astype(np.float64), b, axis=0)  # [draw, u, g, m]
            if signs.flips.any():
                key = cell[signs.flips] * 3 + v_m[signs.flips]  # (cell, m) of each pair that flips
                indicator = sparse.csr_matrix(
                    (np.ones(len(key), dtype=np.float32), (key, np.arange(len(key)))), shape=(n_cells * 3, len(key))
                )
                ups = np.asarray(indicator @ signs.up).T.reshape(b, n_cells, 3)  # [draw, u, m]: pairs with g = +1
                downs = np.asarray(indicator @ signs.down).T.reshape(b, n_cells, 3)  # g = -1
                totals = np.bincount(key, minlength=n_cells * 3).reshape(1, n_cells, 3)
                counts[:, :, 2, :] += ups
                counts[:, :, 0, :] += downs
                counts[:, :, 1, :] += totals - ups - downs
            score = normalized_cmi_from_counts(counts)
            defined = np.isfinite(score)
            best = np.where(defined, np.minimum(best, score), best)
            any_defined |= defined
    return np.where(any_defined, best, np.nan)


@dataclass
class _TargetSigns:
    """The target's sign over every ordered pair of the kept models, in every draw, split into the
    pairs whose order never changes (``steady``, symbol g = sign + 1) and those that flip, as
    one-hot (pairs x draws) float32 matrices ``up`` (g = +1) and ``down`` (g = -1)."""

    first: np.ndarray
    second: np.ndarray
    steady: np.ndarray
    steady_symbol: np.ndarray
    flips: np.ndarray
    up: np.ndarray
    down: np.ndarray


def _target_signs(draws: PopulationDraws, keep: np.ndarray) -> _TargetSigns:
    """The :class:`_TargetSigns` of the models ``keep``, cached on ``draws`` (every measure with
    values on the same models shares them)."""
    cache = draws.__dict__.setdefault("_signs", {})
    key = keep.tobytes()
    if key not in cache:
        from scipy.stats import rankdata

        # Dense ranks per draw: the same pairwise order as the targets, in int16 instead of float64.
        ranks = rankdata(draws.targets[keep], method="dense", axis=0).astype(np.int16)  # (n, B)
        n = len(ranks)
        first, second = np.nonzero(~np.eye(n, dtype=bool))
        s_g = pairwise_sign_of(ranks[first], ranks[second])  # (P, B) int8
        flips = (s_g != s_g[:, :1]).any(axis=1)
        steady = ~flips
        cache.clear()  # one mask at a time: the matrices are large
        cache[key] = _TargetSigns(
            first, second, steady, (s_g[steady, 0].astype(np.int64) + 1), flips,
            np.ascontiguousarray(s_g[flips] == 1, dtype=np.float32), np.ascontiguousarray(s_g[flips] == -1, dtype=np.float32),
        )
    return cache[key]


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the finite entries along ``axis``; NaN where there are none (no warning)."""
    finite = np.isfinite(a)
    count = finite.sum(axis=axis)
    total = np.where(finite, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite samples; (NaN, NaN) when none is."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def paired_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of draws in which ``a`` exceeds ``b`` (ties count one half), over the draws
    where both are defined; NaN when none is. ``paired_fraction(x, x)`` is 0.5."""
    both = np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return float("nan")
    a, b = a[both], b[both]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / len(a))


def distinguishable(fraction: float, level: float) -> bool:
    """Whether a paired fraction says two scores differ at ``level`` (the central ``level``
    interval of their paired difference excludes 0)."""
    return bool(np.isfinite(fraction) and (fraction >= (1 + level) / 2 or fraction <= (1 - level) / 2))
