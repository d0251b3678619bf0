"""Scoring: how well a measure ranks a population of models by their generalization (SPEC §5).

Three scores, all functions of one value per model, the models' generalization target and their
hyperparameters:

- :func:`kendall_tau`: the rank correlation between measure and target over a set of models.
- :func:`granulated_kendall`: Kendall's tau within groups of models that differ along one
  hyperparameter axis only, averaged per axis (Jiang et al. 2020, §5.1; the paper's Tables 1-3).
- :func:`conditional_mutual_information`: how much the sign of a measure difference tells about the
  sign of a generalization difference once two hyperparameter axes are known (Jiang et al. 2020,
  §6; the PGDL competition score), minimised over pairs of axes.

Orientation. :func:`target_values` returns a target where higher means better generalization, and a
measure registered with ``higher_is_better=False`` is negated before scoring, so a positive Kendall
always means "ranks the models the right way round" (SPEC §4).

Missing values. A model whose measure or target is NaN leaves every group and every pair; the scores
report how many were dropped. Infinite values are kept: they rank as the extremes.

References
----------
Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan, S. Bengio. Fantastic generalization measures and
where to find them. ICLR 2020.
Y. Jiang et al. NeurIPS 2020 competition: Predicting generalization in deep learning (PGDL), 2020.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats

from icc_bench.config import AXES, COMPOSITE_AXES

KendallVariant = Literal["tau_a", "tau_b"]
TargetName = Literal["test_accuracy", "generalization_gap"]

#: The generalization targets :func:`target_values` can return.
TARGETS: tuple[str, ...] = ("test_accuracy", "generalization_gap")
_VARIANTS: tuple[str, ...] = ("tau_a", "tau_b")


def pairwise_sign(x: np.ndarray) -> np.ndarray:
    """(n, n) matrix of sign(x_i - x_j) in {-1, 0, 1}.

    Comparisons rather than a subtraction, so that two equal infinities are a tie, not NaN.
    """
    return (x[:, None] > x[None, :]).astype(np.int8) - (x[:, None] < x[None, :]).astype(np.int8)


def kendall_tau(measure: np.ndarray, target: np.ndarray, *, variant: KendallVariant = "tau_a") -> float:
    """Kendall rank correlation between a measure and a generalization target over models.

    ``tau_a`` (default; the seed code's and Jiang et al.'s) is the mean over the n(n-1) ordered
    pairs i != j of sign(m_i - m_j) * sign(g_i - g_j). A pair tied in either variable contributes 0
    and still counts, so ties pull tau_a towards 0. ``tau_b`` is :func:`scipy.stats.kendalltau`
    (variant "b"), which divides by the geometric mean of the numbers of pairs untied in each
    variable instead.

    Parameters
    ----------
    measure, target : ndarray of shape (n,)
        One value per model. Higher target = better generalization; orient the measure first.
    variant : {"tau_a", "tau_b"}
        Which coefficient.

    Returns
    -------
    float
        In [-1, 1]; 1 when the measure orders the models exactly as the target does. NaN when
        n < 2 (no pair), when either input holds a NaN (drop those models first, as
        :func:`granulated_kendall` does), and, for ``tau_b`` only, when either input is constant
        (its denominator is 0). For ``tau_a`` a constant input gives 0.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"Kendall variant {variant!r} is not one of {_VARIANTS}; pick one of those.")
    m = np.asarray(measure, dtype=np.float64)
    g = np.asarray(target, dtype=np.float64)
    if m.ndim != 1 or m.shape != g.shape:
        raise ValueError(
            f"kendall_tau needs two 1-d arrays of equal length, got shapes {m.shape} and {g.shape}."
        )
    n = m.shape[0]
    if n < 2 or np.isnan(m).any() or np.isnan(g).any():
        return float("nan")
    if variant == "tau_b":
        if np.all(m == m[0]) or np.all(g == g[0]):
            return float("nan")  # scipy returns NaN here too; answered before the call, explicitly
        return float(scipy.stats.kendalltau(m, g, variant="b").statistic)
    concordance = pairwise_sign(m).astype(np.int64) * pairwise_sign(g)
    return float(concordance.sum() / (n * (n - 1)))  # the diagonal is 0 and not a pair


def target_values(records_df: pd.DataFrame, target: TargetName = "test_accuracy") -> np.ndarray:
    """The generalization target of each model, oriented so that higher = better generalization.

    ``test_accuracy`` (the paper) is the final test accuracy. ``generalization_gap`` (Jiang et al.,
    PGDL) is train accuracy - test accuracy, where a *lower* gap is better; this function returns
    its negative, test - train, so that every score keeps "positive = ranks the models the right
    way round" whichever target is chosen.

    Parameters
    ----------
    records_df : DataFrame
        One row per model with columns ``test_accuracy`` and, for the gap, ``train_accuracy``
        (fractions in [0, 1]).
    target : {"test_accuracy", "generalization_gap"}

    Returns
    -------
    ndarray of shape (n_models,), float64
        NaN where the record has no accuracy (the scores drop such models and count them).
    """
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is not one of {TARGETS}; pick one of those.")
    needed = ["test_accuracy"] if target == "test_accuracy" else ["train_accuracy", "test_accuracy"]
    missing = [c for c in needed if c not in records_df.columns]
    if missing:
        raise ValueError(
            f"records have no column(s) {missing} needed for target {target!r}; "
            f"columns present: {list(records_df.columns)}."
        )
    test = records_df["test_accuracy"].to_numpy(dtype=np.float64)
    if target == "test_accuracy":
        return test
    return test - records_df["train_accuracy"].to_numpy(dtype=np.float64)  # = -(train - test)


def _prepare(
    values: np.ndarray,
    target: np.ndarray,
    hyperparams: pd.DataFrame,
    columns: list[str],
    higher_is_better: bool,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, int]:
    """Validate, orient the measure, and drop the models with a NaN measure or target."""
    m = np.asarray(values, dtype=np.float64)
    g = np.asarray(target, dtype=np.float64)
    if m.ndim != 1 or m.shape != g.shape or m.shape[0] != len(hyperparams):
        raise ValueError(
            f"values {m.shape}, target {g.shape} and hyperparams ({len(hyperparams)} rows) must "
            "describe the same models: 1-d arrays with one entry per hyperparams row."
        )
    missing = [c for c in columns if c not in hyperparams.columns]
    if missing:
        raise ValueError(
            f"hyperparams has no column(s) {missing}; columns present: {list(hyperparams.columns)}."
        )
    hp = hyperparams[columns].reset_index(drop=True)
    if hp.isna().any().any():
        bad = [c for c in columns if hp[c].isna().any()]
        raise ValueError(f"hyperparams column(s) {bad} hold missing values; every model needs every axis.")
    if not higher_is_better:
        m = -m
    keep = ~(np.isnan(m) | np.isnan(g))
    return m[keep], g[keep], hp[keep].reset_index(drop=True), int((~keep).sum())


@dataclass(frozen=True)
class GranulatedKendall:
    """The granulated Kendall coefficient of one measure on one population.

    Attributes
    ----------
    per_axis : dict[str, float]
        psi_h per axis, in the order of ``axes``; NaN for an axis with no usable group (or whose
        groups are all undefined, see ``n_undefined_groups``).
    total : float
        Psi, the mean of psi_h over the axes where it is defined; NaN when none is.
    groups : dict[str, int]
        Per axis, the number of groups that qualified (at least two models, the axis varying).
    n_undefined_groups : dict[str, int]
        Per axis, the qualifying groups whose tau is undefined (tau_b of a group with a constant
        measure or target); they are left out of psi_h. Always 0 for tau_a.
    n_models : int
        Models scored, after dropping NaNs.
    n_nan_dropped : int
        Models dropped because their measure or target was NaN.
    """

    per_axis: dict[str, float]
    total: float
    groups: dict[str, int]
    n_undefined_groups: dict[str, int]
    n_models: int
    n_nan_dropped: int


def _groups_along(hp: pd.DataFrame, axis: str, axes: list[str]) -> list[np.ndarray]:
    """Row positions of the groups of models that agree on every axis but ``axis``.

    Only the columns in ``axes`` group, so repeated seeds of a configuration share a group.
    """
    others = [a for a in axes if a != axis]
    if not others:
        return [np.arange(len(hp))]
    return list(hp.groupby(others, sort=False, dropna=False).indices.values())


def granulated_kendall(
    values: np.ndarray,
    target: np.ndarray,
    hyperparams: pd.DataFrame,
    *,
    axes: tuple[str, ...] = AXES,
    variant: KendallVariant = "tau_a",
    higher_is_better: bool = True,
) -> GranulatedKendall:
    """Granulated Kendall coefficient (Jiang et al. 2020, §5.1; SPEC §5).

    For each axis h, the models are grouped by their values on every *other* axis in ``axes``;
    psi_h is the unweighted mean of Kendall's tau (``variant``) over the groups in which h takes at
    least two distinct values, and Psi = mean_h psi_h over the axes where psi_h is defined. This
    needs no Cartesian grid: on the paper's tied grid, where weight decay varies only at learning
    rate 0.1, the weight-decay axis has one group per setting of the other axes at lr 0.1, and the
    groups at the other learning rates hold a single configuration and are skipped.

    A group qualifies when h varies in it. With one model per configuration that is exactly
    "at least two models"; with repeated seeds it also skips a group made only of the seeds of one
    configuration, whose tau would rank seed noise, not the axis. Within a qualifying group tau runs
    over all its models, pairs of seeds included.

    Parameters
    ----------
    values : ndarray of shape (n_models,)
        The measure, one value per model.
    target : ndarray of shape (n_models,)
        Generalization, higher = better (see :func:`target_values`).
    hyperparams : DataFrame
        One row per model (same order), one column per axis. Columns not in ``axes`` (a seed, a
        model id) are ignored and never split a group.
    axes : tuple of str
        The axes to score, by default the eight of SPEC §4.
    variant : {"tau_a", "tau_b"}
        See :func:`kendall_tau`. Under tau_a a group with a constant measure scores 0 and counts;
        under tau_b its tau is undefined, and it is skipped and counted in ``n_undefined_groups``.
    higher_is_better : bool
        The measure's registered direction; False negates it first, so that a positive psi always
        means the measure ranks the models the right way round.

    Returns
    -------
    GranulatedKendall
        Each psi_h and Psi in [-1, 1].
    """
    if variant not in _VARIANTS:
        raise ValueError(f"Kendall variant {variant!r} is not one of {_VARIANTS}; pick one of those.")
    axes = list(axes)
    m, g, hp, n_dropped = _prepare(values, target, hyperparams, axes, higher_is_better)
    per_axis: dict[str, float] = {}
    groups: dict[str, int] = {}
    undefined: dict[str, int] = {}
    for axis in axes:
        column = hp[axis].to_numpy()
        taus = [
            kendall_tau(m[idx], g[idx], variant=variant)
            for idx in _groups_along(hp, axis, axes)
            if len(pd.unique(column[idx])) >= 2
        ]
        defined = [t for t in taus if not np.isnan(t)]
        groups[axis] = len(taus)
        undefined[axis] = len(taus) - len(defined)
        per_axis[axis] = float(np.mean(defined)) if defined else float("nan")
    defined_axes = [v for v in per_axis.values() if not np.isnan(v)]
    total = float(np.mean(defined_axes)) if defined_axes else float("nan")
    return GranulatedKendall(
        per_axis=per_axis, total=total, groups=groups, n_undefined_groups=undefined,
        n_models=len(m), n_nan_dropped=n_dropped,
    )


@dataclass(frozen=True)
class ConditionalMI:
    """The conditional-mutual-information score of one measure on one population.

    Attributes
    ----------
    score : float
        The minimum of ``per_pair`` over its defined entries (NaN when none is defined).
    per_pair : dict[tuple[str, str], float]
        Normalized CMI conditioned on each unordered pair of composite axes, keyed by the two
        composite axes' labels (member axes joined by "+", e.g. "learning_rate+weight_decay").
    unconditioned : float
        The same normalized mutual information with no conditioning (k = 0), for reference.
    n_models : int
        Models scored, after dropping NaNs.
    n_nan_dropped : int
        Models dropped because their measure or target was NaN.
    n_pairs : int
        Ordered pairs of models the probabilities are estimated from, n_models * (n_models - 1).
    """

    score: float
    per_pair: dict[tuple[str, str], float]
    unconditioned: float
    n_models: int
    n_nan_dropped: int
    n_pairs: int


def composite_label(composite: tuple[str, ...]) -> str:
    """The name of a composite axis: its member axes joined by "+"."""
    return "+".join(composite)


def normalized_cmi_from_counts(counts: np.ndarray) -> np.ndarray:
    """I(V_g; V_m | U) / H(V_g | U) from pair counts, for a stack of count tables.

    ``counts[..., u, g, m]`` is the number of pairs in cell u of U with V_g = g and V_m = m (symbols
    0, 1, 2); leading dimensions are independent tables (the bootstrap passes one per draw). The
    expectations over U weight each cell by its share of pairs (the definition; on a Cartesian grid
    every cell holds as many pairs, so this equals PGDL's plain mean over cells). Both numerator
    and denominator are expectations over U before the ratio, as in Jiang et al. NaN where
    H(V_g | U) = 0: the target difference is then fixed by U and there is nothing to predict.
    """
    # With N the number of pairs and c the counts, N I = sum c log c + sum_u c_u log c_u
    # - sum_ug c_ug log c_ug - sum_um c_um log c_um and N H = sum_u c_u log c_u - sum_ug c_ug log c_ug
    # (0 log 0 = 0): the ratio needs no probabilities, and four passes over the counts.
    from scipy.special import xlogy

    c = np.asarray(counts, dtype=np.float64)
    c_ug = c.sum(axis=-1)
    c_um = c.sum(axis=-2)
    c_u = c_ug.sum(axis=-1)
    u_term = xlogy(c_u, c_u).sum(axis=-1)
    ug_term = xlogy(c_ug, c_ug).sum(axis=(-2, -1))
    mutual = xlogy(c, c).sum(axis=(-3, -2, -1)) + u_term - ug_term - xlogy(c_um, c_um).sum(axis=(-2, -1))
    entropy = u_term - ug_term
    # Exact zeros come out as rounding residue of sums of c log c; relative to the total they are noise.
    scale = np.maximum(xlogy(c_u.sum(axis=-1), c_u.sum(axis=-1)), 1.0)
    defined = entropy > 1e-12 * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, np.maximum(mutual, 0.0) / np.where(defined, entropy, 1.0), np.nan)


def _normalized_cmi(v_g: np.ndarray, v_m: np.ndarray, cell: np.ndarray) -> float:
    """:func:`normalized_cmi_from_counts` of one sample per pair.

    ``v_g``, ``v_m`` are symbols in {0, 1, 2} (sign + 1), ``cell`` the integer value of U.
    """
    _, cell = np.unique(cell, return_inverse=True)  # compact ids: only occupied cells
    n_cells = int(cell.max()) + 1
    counts = np.bincount(cell * 9 + v_g * 3 + v_m, minlength=n_cells * 9).reshape(n_cells, 3, 3)
    return float(normalized_cmi_from_counts(counts))


def conditional_mutual_information(
    values: np.ndarray,
    target: np.ndarray,
    hyperparams: pd.DataFrame,
    *,
    composite_axes: tuple[tuple[str, ...], ...] = COMPOSITE_AXES,
    higher_is_better: bool = True,
) -> ConditionalMI:
    """Conditional mutual information score (Jiang et al. 2020, §6; PGDL; SPEC §5).

    The sample is every *ordered* pair (i, j), i != j, of models. For each pair,
    V_g = sign(g_i - g_j) and V_m = sign(m_i - m_j), each a symbol in {-1, 0, +1}: a tie is its own
    symbol, neither dropped nor merged into a side (PGDL's ``>`` sends ties to "-", which makes the
    pair (i, j) and its reverse disagree). Conditioning on a pair of composite axes (A, B), the
    pair's value is U = (A_i, A_j, B_i, B_j), the composite values of both models, as in PGDL, where
    a composite value is the tuple of its member axes (e.g. (learning rate, weight decay)). Using
    both orders of every pair makes the score independent of the order of the models.

    Per conditioning set, the normalized CMI is I(V_m; V_g | U) / H(V_g | U), both expectations over
    U, in [0, 1]; the score is its minimum over the unordered pairs of composite axes. A measure
    with V_m = V_g on every pair scores exactly 1. The mutual information does not see the sign of
    the measure: a perfectly inverted measure also scores 1 (orient by the granulated Kendall).

    Parameters
    ----------
    values, target : ndarray of shape (n_models,)
        The measure and the generalization target (higher = better), one value per model.
    hyperparams : DataFrame
        One row per model, with every member axis of ``composite_axes`` as a column; other
        columns are ignored.
    composite_axes : tuple of tuples of str
        The composite axes over which the grid is Cartesian (SPEC §4); at least two.
    higher_is_better : bool
        The measure's direction; applied (negating the measure) for uniformity with
        :func:`granulated_kendall`, it leaves every value here unchanged.

    Returns
    -------
    ConditionalMI
        NaN entries where fewer than two models remain, or where H(V_g | U) = 0.
    """
    if len(composite_axes) < 2:
        raise ValueError(
            f"conditional_mutual_information conditions on pairs of composite axes and needs at "
            f"least two, got {composite_axes!r}."
        )
    columns = list(dict.fromkeys(a for composite in composite_axes for a in composite))
    m, g, hp, n_dropped = _prepare(values, target, hyperparams, columns, higher_is_better)
    n = len(m)
    labels = [composite_label(c) for c in composite_axes]
    pairs = [(a, b) for a in range(len(labels)) for b in range(a + 1, len(labels))]
    if n < 2:
        nan = float("nan")
        return ConditionalMI(
            score=nan, per_pair={(labels[a], labels[b]): nan for a, b in pairs}, unconditioned=nan,
            n_models=n, n_nan_dropped=n_dropped, n_pairs=0,
        )
    first, second = np.nonzero(~np.eye(n, dtype=bool))  # every ordered pair i != j
    v_g = (pairwise_sign(g)[first, second] + 1).astype(np.int64)
    v_m = (pairwise_sign(m)[first, second] + 1).astype(np.int64)
    codes = [hp.groupby(list(c), sort=True).ngroup().to_numpy() for c in composite_axes]
    sizes = [int(c.max()) + 1 for c in codes]

    per_pair: dict[tuple[str, str], float] = {}
    for a, b in pairs:
        cell = np.ravel_multi_index(
            (codes[a][first], codes[a][second], codes[b][first], codes[b][second]),
            (sizes[a], sizes[a], sizes[b], sizes[b]),
        )  # one integer per value of U = (A_i, A_j, B_i, B_j)
        per_pair[(labels[a], labels[b])] = _normalized_cmi(v_g, v_m, cell)
    unconditioned = _normalized_cmi(v_g, v_m, np.zeros_like(first))
    defined = [v for v in per_pair.values() if not np.isnan(v)]
    return ConditionalMI(
        score=min(defined) if defined else float("nan"), per_pair=per_pair,
        unconditioned=unconditioned, n_models=n, n_nan_dropped=n_dropped, n_pairs=len(first),
    )
