"""Numeric kernels of the intraclass-clustering measures c1-c4 (SPEC §2).

Carbonnelle & De Vleeschouwer, "Intraclass clustering: an implicit learning ability that
regularizes DNNs", ICLR 2021. Every function here is a pure function of tensors and labels: no I/O,
no global state, no model. Inputs may live on any device that supports float64; all accumulation is
done in float64 on that device and the results are returned as Python floats.

Conventions shared by all kernels (SPEC §1-2):

- ``preacts`` / ``acts``: one ``(n_samples, n_neurons_l)`` tensor per layer, rows aligned with the
  labels. Neuron-level measures (c1, c3) pool the neurons of all layers; layer-level measures
  (c2, c4) look at each layer's vector of neurons.
- Standard deviations are population standard deviations (``ddof=0``), as ``numpy.std`` in the
  seed code.
- A neuron is *dead* when its pre-activation is < 0 on every sample: it scores 0 in c1 and c3 and
  is dropped in c4.
- ``mean^k`` is the mean of the ``k`` largest values; ``k`` larger than the number of values
  means the mean of all of them (:func:`topk_mean`).
- Cosine distance follows scikit-learn: a zero vector has distance 1 to every vector (another zero
  vector included) and every vector has distance 0 to itself.
- A class or subclass whose value is undefined (no samples in the probe, no other subclass in its
  superclass, fewer than two samples for a pairwise spread) is left out of the aggregate over
  classes; a measure with nothing left raises ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

NeuronAgg = Literal["topk_mean", "max"]
ClassAgg = Literal["median", "mean"]
Pairs = Literal["unordered", "full_matrix"]

# Below this a float64 mean of cosine distances (each in [0, 2]) is zero up to rounding.
_ZERO_DISTANCE = 1e-12
# Largest number of float64 entries of one chunk of an (n, n) Gram matrix (32 MiB).
_GRAM_CHUNK_ENTRIES = 1 << 22


# ----------------------------------------------------------------------------- validation helpers


def _check_choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported: use one of {', '.join(map(repr, allowed))}.")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer (the number of top values averaged).")


def _check_labels(labels: Tensor, n_samples: int, name: str) -> None:
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} has shape {tuple(labels.shape)}: expected ({n_samples},), one label per sample row."
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {labels.dtype}: pass integer class labels (e.g. torch.int64).")


def _check_layers(layers: list[Tensor], name: str) -> int:
    """Validate a list of per-layer (n_samples, n_neurons) tensors; return n_samples."""
    if len(layers) == 0:
        raise ValueError(f"{name} is empty: pass one (n_samples, n_neurons) tensor per layer.")
    n_samples = layers[0].shape[0] if layers[0].ndim == 2 else -1
    for index, layer in enumerate(layers):
        if layer.ndim != 2 or layer.shape[0] != n_samples or layer.shape[1] == 0:
            raise ValueError(
                f"{name}[{index}] has shape {tuple(layer.shape)}: every layer must be a 2-D "
                f"(n_samples, n_neurons) tensor with the same n_samples and at least one neuron."
            )
    return n_samples


def _check_hierarchy(fine: Tensor, fine_to_coarse: Tensor, n_samples: int) -> None:
    _check_labels(fine, n_samples, "fine")
    if fine_to_coarse.ndim != 1:
        raise ValueError(f"fine_to_coarse has shape {tuple(fine_to_coarse.shape)}: expected (n_subclasses,).")
    if n_samples and (int(fine.min()) < 0 or int(fine.max()) >= fine_to_coarse.shape[0]):
        raise ValueError(
            f"fine labels span [{int(fine.min())}, {int(fine.max())}] but fine_to_coarse has "
            f"{fine_to_coarse.shape[0]} entries: pass the mapping of every subclass label."
        )


# ----------------------------------------------------------------------------- shared pieces


def topk_mean(values: Tensor, k: int) -> Tensor:
    """Mean of the ``k`` largest values along the last dimension (``mean^k`` of SPEC §2).

    Parameters
    ----------
    values : Tensor of shape (..., m)
        Values to aggregate; ``m >= 1``.
    k : int
        Number of largest values averaged. Clipped to ``m``: ``k > m`` gives the mean of all
        ``m`` values, so a small network (or layer) is scored on every neuron it has.

    Returns
    -------
    Tensor of shape (...)
    """
    _check_k(k)
    if values.shape[-1] == 0:
        raise ValueError("topk_mean got an empty last dimension: there is nothing to average.")
    return values.topk(min(k, values.shape[-1]), dim=-1).values.mean(dim=-1)


def _reduce_neurons(values: Tensor, k: int, neuron_agg: str) -> Tensor:
    """``mean^k`` over the last dimension, or its maximum (``neuron_agg="max"``, k unused)."""
    if neuron_agg == "max":
        return values.max(dim=-1).values
    return topk_mean(values, k)


def _aggregate(values: Tensor, how: str) -> float:
    """Mean or median of a 1-D tensor; the median of an even count is the mean of the two middle
    values (``numpy.median``), not torch's lower median."""
    if how == "median":
        return float(torch.quantile(values, 0.5))
    return float(values.mean())


def _normalize_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit norm in float64; a zero row stays zero (so its cosine similarity to
    anything is 0 and its cosine distance 1, scikit-learn's convention)."""
    x = x.to(torch.float64)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def _dead_neurons(preact: Tensor) -> Tensor:
    """Boolean (n_neurons,): pre-activation < 0 on every sample."""
    return (preact < 0).all(dim=0)


def _group_sums(x: Tensor, codes: Tensor, n_groups: int) -> Tensor:
    """(n_groups, m) float64 sums of the rows of x (n, m) per group code.

    ``index_put_(accumulate=True)`` rather than ``index_add_``: same sums, but index_add_'s CPU
    kernel was 3x slower on a training set and 1000x slower on small inputs on a busy 2-core host.
    """
    sums = torch.zeros(n_groups, x.shape[1], dtype=torch.float64, device=x.device)
    return sums.index_put_((codes,), x.to(torch.float64), accumulate=True)


def _group_moments(x: Tensor, codes: Tensor, n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group sample count (G,), mean (G, m) and centred sum of squares (G, m), two-pass in
    float64 (no sum-of-squares cancellation). Empty groups get a NaN mean."""
    x = x.to(torch.float64)
    counts = torch.bincount(codes, minlength=n_groups).to(torch.float64)
    means = _group_sums(x, codes, n_groups) / counts[:, None]
    m2 = _group_sums((x - means[codes]) ** 2, codes, n_groups)
    return counts, means, m2


def _percentile_linear(x: Tensor, q: float) -> Tensor:
    """Per-column q-th percentile with linear interpolation (``numpy.percentile``'s default).

    Written out because ``torch.quantile`` refuses inputs above 2**24 elements (a training set).
    """
    n = x.shape[0]
    ordered = x.sort(dim=0).values
    position = q / 100 * (n - 1)
    low = math.floor(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


# ----------------------------------------------------------------------------- silhouette and spread


def silhouette_samples_cosine(x: Tensor, labels: Tensor) -> Tensor:
    """Silhouette coefficient of every sample under the cosine distance, in O(n K d).

    For sample x in cluster A, ``a`` is the mean cosine distance to the *other* members of A,
    ``b`` the smallest mean cosine distance to the members of another cluster, and
    ``s = (b - a) / max(a, b)`` (Rousseeuw 1987). With rows normalized, ``x^ = x / ||x||``, the
    mean distance to a cluster C is ``1 - x^ . m_C`` with ``m_C`` the mean of ``x^`` over C, so no
    n x n matrix is formed; the sample's own (zero) distance is removed from its cluster's sum.

    The numbers equal ``sklearn.metrics.silhouette_samples(x, labels, metric="cosine")``:
    a zero row has distance 1 to every other row (another zero row included) and distance 0 to
    itself; ``s = 0`` for a cluster of one, and ``s = 0`` when ``a = b = 0`` (scikit-learn's
    0 / 0 -> 0; means below 1e-12 count as 0, float64 rounding of an exact 0).

    Parameters
    ----------
    x : Tensor of shape (n_samples, n_features)
    labels : Tensor of shape (n_samples,)
        Integer cluster labels (any values); at least two distinct ones.

    Returns
    -------
    Tensor of shape (n_samples,), float64, in [-1, 1]. Higher: the sample sits closer to its own
    cluster than to the nearest other one.

    References
    ----------
    P. J. Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation of
    cluster analysis", J. Comput. Appl. Math. 20 (1987).
    """
    if x.ndim != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}: expected a 2-D (n_samples, n_features) tensor.")
    _check_labels(labels, x.shape[0], "labels")
    _, codes, counts = torch.unique(labels.to(x.device), return_inverse=True, return_counts=True)
    if counts.shape[0] < 2:
        raise ValueError(
            f"silhouette needs at least two clusters, got {counts.shape[0]}: pass samples of two or more labels."
        )
    unit = _normalize_rows(x)  # (n, d)
    counts = counts.to(torch.float64)
    cluster_sums = _group_sums(unit, codes, counts.shape[0])  # (K, d)
    distance_sums = counts - unit @ cluster_sums.T  # (n, K): sum over C of (1 - x^ . y^)
    rows = torch.arange(unit.shape[0], device=unit.device)
    own_count = counts[codes]
    # The term y = x of the own sum is 1 - ||x^||^2 (0, or 1 for a zero row); its true distance is 0.
    self_term = 1 - torch.linalg.vector_norm(unit, dim=1) ** 2
    a = (distance_sums[rows, codes] - self_term) / (own_count - 1).clamp(min=1)
    mean_distances = distance_sums / counts
    mean_distances[rows, codes] = math.inf
    b = mean_distances.min(dim=1).values
    # Each distance lies in [0, 2]; the clamps undo float64 rounding of the means (scikit-learn clips).
    a, b = a.clamp(0, 2), b.clamp(0, 2)
    larger = torch.maximum(a, b)
    silhouette = (b - a) / torch.where(larger > _ZERO_DISTANCE, larger, torch.ones_like(larger))
    defined = (own_count > 1) & (larger > _ZERO_DISTANCE)
    return torch.where(defined, silhouette, torch.zeros_like(silhouette))


def _gram_frobenius_squared(unit: Tensor) -> Tensor:
    """``||X X^T||_F^2 = ||X^T X||_F^2``, via the smaller of the two products (X^T X is d x d;
    X X^T is n x n and is formed in row chunks)."""
    n, d = unit.shape
    if d <= n:
        return ((unit.T @ unit) ** 2).sum()
    chunk = max(1, _GRAM_CHUNK_ENTRIES // n)
    return sum(((unit[start : start + chunk] @ unit.T) ** 2).sum() for start in range(0, n, chunk))


def pairwise_cosine_distance_std(x: Tensor, *, pairs: Pairs = "unordered") -> float:
    """Population standard deviation of the pairwise cosine distances among rows, in O(n d^2).

    With ``s_ij = x^_i . x^_j`` and distances ``1 - s_ij``, the sums over pairs follow from
    ``sum_ij s_ij = ||sum_i x^_i||^2`` and ``sum_ij s_ij^2 = ||X^T X||_F^2`` minus the diagonal
    terms ``||x^_i||^2`` and ``||x^_i||^4``: exact, no n x n matrix.

    Parameters
    ----------
    x : Tensor of shape (n_samples, n_features)
        Zero rows follow scikit-learn: distance 1 to every other row, a zero row included.
    pairs : {"unordered", "full_matrix"}
        ``"unordered"`` (SPEC default): the n (n - 1) / 2 pairs i < j. ``"full_matrix"`` (the seed
        code): all n^2 entries of the distance matrix, its zero diagonal included.

    Returns
    -------
    float
        ``Sigma_E`` of SPEC §2, ddof=0, in [0, 1]. NaN when no pair exists (n < 2 for
        ``"unordered"``, n = 0 for ``"full_matrix"``): the spread of an empty set is undefined, and
        0.0 would read as "no spread" and pull an average down; callers leave NaN out. For
        ``"full_matrix"`` and n = 1 the matrix is the single 0, so the answer is 0.0.
    """
    _check_choice(pairs, "pairs", ("unordered", "full_matrix"))
    if x.ndim != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}: expected a 2-D (n_samples, n_features) tensor.")
    n = x.shape[0]
    count = n * (n - 1) if pairs == "unordered" else n * n  # ordered off-diagonal pairs count each pair twice
    if count == 0:
        return math.nan
    unit = _normalize_rows(x)  # (n, d)
    squared_norms = torch.linalg.vector_norm(unit, dim=1) ** 2  # 1, or 0 for a zero row
    column_sum = unit.sum(dim=0)
    off_diagonal_similarity = column_sum @ column_sum - squared_norms.sum()
    off_diagonal_similarity_sq = _gram_frobenius_squared(unit) - (squared_norms**2).sum()
    n_off_diagonal = n * (n - 1)
    # Distances 1 - s on the off-diagonal; the full matrix's diagonal adds zeros to both sums.
    distance_sum = n_off_diagonal - off_diagonal_similarity
    distance_sq_sum = n_off_diagonal - 2 * off_diagonal_similarity + off_diagonal_similarity_sq
    mean = distance_sum / count
    variance = distance_sq_sum / count - mean * mean
    return math.sqrt(max(float(variance), 0.0))  # a negative variance is rounding of an exact 0


# ----------------------------------------------------------------------------- c1, subclass selectivity


def _layer_selectivity(preact: Tensor, fine: Tensor, fine_to_coarse: Tensor, eps: float) -> Tensor:
    """(n_subclasses, n_neurons) selectivities of one layer's neurons; NaN rows where undefined."""
    n_subclasses = fine_to_coarse.shape[0]
    counts, means, m2 = _group_moments(preact, fine, n_subclasses)
    selectivity = torch.full_like(means, math.nan)
    for subclass in range(n_subclasses):
        siblings = (fine_to_coarse == fine_to_coarse[subclass]) & (counts > 0)
        siblings[subclass] = False
        n_rest = counts[siblings].sum()
        if counts[subclass] == 0 or n_rest == 0:
            continue  # no sample of C_i or of S(i) \ C_i in the probe: undefined
        # Mean and spread of S(i) \ C_i from its subclasses' moments (exact pooled variance).
        rest_counts = counts[siblings][:, None]
        rest_mean = (rest_counts * means[siblings]).sum(dim=0) / n_rest
        rest_m2 = (m2[siblings] + rest_counts * (means[siblings] - rest_mean) ** 2).sum(dim=0)
        sigma_own = torch.sqrt(m2[subclass] / counts[subclass])
        sigma_rest = torch.sqrt(rest_m2 / n_rest)
        selectivity[subclass] = (means[subclass] - rest_mean) / (sigma_own + sigma_rest + eps)
    dead = _dead_neurons(preact)  # (n_neurons,)
    return selectivity.masked_fill(dead & ~selectivity.isnan(), 0.0)  # undefined rows stay NaN


def subclass_selectivity(
    preacts: list[Tensor], fine: Tensor, fine_to_coarse: Tensor, *, eps: float = 1e-7
) -> Tensor:
    """Selectivity of every neuron for every subclass (the matrix behind c1).

    ``sel(n, i) = (mu_{n,C_i} - mu_{n,S(i)\\C_i}) / (sigma_{n,C_i} + sigma_{n,S(i)\\C_i} + eps)``
    (SPEC §2, the paper's Eq. 1), with population standard deviations (ddof=0) of neuron n's
    pre-activations over the samples of subclass i (C_i) and over the other samples of its
    superclass (S(i) \\ C_i). Dead neurons score 0.

    Parameters
    ----------
    preacts : list of Tensor, each of shape (n_samples, n_neurons_l)
        Pre-activations per layer; columns of all layers are concatenated in order.
    fine : Tensor of shape (n_samples,)
        Subclass label of each sample, in ``[0, n_subclasses)``.
    fine_to_coarse : Tensor of shape (n_subclasses,)
        Superclass of each subclass.
    eps : float
        Added to the denominator.

    Returns
    -------
    Tensor of shape (n_subclasses, n_neurons_total), float64. Unbounded; higher = neuron n's
    pre-activation is larger on subclass i than on the rest of its superclass. A row is NaN where
    the selectivity is undefined: subclass i has no sample, or its superclass no other sample.
    """
    n_samples = _check_layers(preacts, "preacts")
    _check_hierarchy(fine, fine_to_coarse, n_samples)
    device = preacts[0].device
    fine, fine_to_coarse = fine.to(device), fine_to_coarse.to(device)
    return torch.cat([_layer_selectivity(layer, fine, fine_to_coarse, eps) for layer in preacts], dim=1)


def c1_selectivity(
    preacts: list[Tensor],
    fine: Tensor,
    fine_to_coarse: Tensor,
    *,
    k: int = 30,
    neuron_agg: NeuronAgg = "topk_mean",
    subclass_agg: ClassAgg = "median",
    per_layer: bool = False,
    eps: float = 1e-7,
) -> float | list[float]:
    """c1, neuron-level subclass selectivity: ``median_i mean^k_n sel(n, i)`` (SPEC §2).

    Parameters
    ----------
    preacts : list of Tensor, each of shape (n_samples, n_neurons_l)
        Pre-activations per layer; neurons of all layers are pooled.
    fine, fine_to_coarse, eps
        As in :func:`subclass_selectivity`.
    k : int
        Neurons averaged per subclass (paper: 30); clipped to the number of neurons.
    neuron_agg : {"topk_mean", "max"}
        ``"max"`` takes the single most selective neuron (k unused).
    subclass_agg : {"median", "mean"}
        Aggregate over the subclasses that have a defined selectivity (paper: median).
    per_layer : bool
        If True, one value per layer, with the top-k taken over that layer's neurons only.

    Returns
    -------
    float, or list of float (one per layer). Unbounded, typically in [0, 3]; higher = neurons
    separate subclasses better = predicts better generalization.

    References
    ----------
    Carbonnelle & De Vleeschouwer, ICLR 2021, Section 2.2.1, Eq. (1).
    """
    _check_k(k)
    _check_choice(neuron_agg, "neuron_agg", ("topk_mean", "max"))
    _check_choice(subclass_agg, "subclass_agg", ("median", "mean"))
    selectivity = subclass_selectivity(preacts, fine, fine_to_coarse, eps=eps)
    defined = ~selectivity[:, 0].isnan()
    if not bool(defined.any()):
        raise ValueError(
            "c1 is undefined: no subclass has samples both in it and in the rest of its superclass; "
            "use a hierarchical probe sample with at least two subclasses per superclass."
        )
    selectivity = selectivity[defined]
    if not per_layer:
        return _aggregate(_reduce_neurons(selectivity, k, neuron_agg), subclass_agg)
    blocks = selectivity.split([layer.shape[1] for layer in preacts], dim=1)
    return [_aggregate(_reduce_neurons(block, k, neuron_agg), subclass_agg) for block in blocks]


# ----------------------------------------------------------------------------- c2, silhouette


def c2_silhouette(
    acts: list[Tensor],
    fine: Tensor,
    fine_to_coarse: Tensor,
    *,
    k: int = 5,
    subclass_agg: ClassAgg = "median",
    per_layer: bool = False,
) -> float | list[float]:
    """c2, layer-level silhouette: ``median_i mean^k_l sil(l, i)`` (SPEC §2).

    ``sil(l, i)`` is the mean, over the samples of subclass i, of their cosine silhouette
    (:func:`silhouette_samples_cosine`) computed among the samples of i's superclass only, with
    clusters = its subclasses, on layer l's activations.

    Parameters
    ----------
    acts : list of Tensor, each of shape (n_samples, n_neurons_l)
        Activations (ReLU of the pre-activations) per layer.
    fine : Tensor of shape (n_samples,)
        Subclass label of each sample, in ``[0, n_subclasses)``.
    fine_to_coarse : Tensor of shape (n_subclasses,)
        Superclass of each subclass.
    k : int
        Layers averaged per subclass (paper: 5 for WRN, 1 for VGG); clipped to the number of layers.
    subclass_agg : {"median", "mean"}
        Aggregate over subclasses (paper: median). A subclass without samples, or whose superclass
        has no other subclass in the sample, has no silhouette and is left out.
    per_layer : bool
        If True, one value per layer: ``subclass_agg_i sil(l, i)``.

    Returns
    -------
    float, or list of float (one per layer), in [-1, 1]. Higher = subclasses form tighter,
    better separated clusters = predicts better generalization.

    References
    ----------
    Carbonnelle & De Vleeschouwer, ICLR 2021, Section 2.2.2, Eq. (2).
    """
    _check_k(k)
    _check_choice(subclass_agg, "subclass_agg", ("median", "mean"))
    n_samples = _check_layers(acts, "acts")
    _check_hierarchy(fine, fine_to_coarse, n_samples)
    device = acts[0].device
    fine, fine_to_coarse = fine.to(device), fine_to_coarse.to(device)
    coarse = fine_to_coarse[fine]
    table = torch.full((len(acts), fine_to_coarse.shape[0]), math.nan, dtype=torch.float64, device=device)
    for superclass in torch.unique(coarse):
        members = (coarse == superclass).nonzero().squeeze(1)
        subclasses = torch.unique(fine[members])
        if subclasses.shape[0] < 2:
            continue  # one subclass: no other cluster, no silhouette
        for layer_index, layer in enumerate(acts):
            silhouettes = silhouette_samples_cosine(layer[members], fine[members])
            for subclass in subclasses:
                table[layer_index, subclass] = silhouettes[fine[members] == subclass].mean()
    defined = ~table[0].isnan()
    if not bool(defined.any()):
        raise ValueError(
            "c2 is undefined: no superclass has samples of two subclasses; use a hierarchical probe "
            "sample with at least two subclasses per superclass."
        )
    table = table[:, defined]  # (n_layers, n_defined_subclasses)
    if per_layer:
        return [_aggregate(row, subclass_agg) for row in table]
    return _aggregate(topk_mean(table.T, k), subclass_agg)


# ----------------------------------------------------------------------------- c3, variance ratio


def c3_variance_ratio(
    preacts: list[Tensor],
    labels: Tensor,
    *,
    k: int = 30,
    neuron_agg: NeuronAgg = "topk_mean",
    class_agg: ClassAgg = "mean",
    per_layer: bool = False,
    eps: float = 1e-7,
) -> float | list[float]:
    """c3, neuron-level variance ratio: ``mean_i mean^k_n sigma_{n,C_i} / (sigma_{n,D} + eps)``.

    ``sigma_{n,E}`` is the population standard deviation (ddof=0) of neuron n's pre-activations
    over the samples of E: class i (C_i) or the whole sample (D). Dead neurons score 0.

    Parameters
    ----------
    preacts : list of Tensor, each of shape (n_samples, n_neurons_l)
        Pre-activations per layer; neurons of all layers are pooled.
    labels : Tensor of shape (n_samples,)
        Class label of each sample (any integer values; the classes present are used).
    k : int
        Neurons averaged per class (paper: 30); clipped to the number of neurons.
    neuron_agg : {"topk_mean", "max"}
        ``"max"`` takes the single highest ratio (k unused).
    class_agg : {"mean", "median"}
        Aggregate over classes (paper: mean).
    per_layer : bool
        If True, one value per layer, with the top-k taken over that layer's neurons only.
    eps : float
        Added to the denominator.

    Returns
    -------
    float, or list of float (one per layer), >= 0 (a class of one sample scores 0). Higher =
    neurons vary more within a class relative to the whole data = predicts better generalization.

    References
    ----------
    Carbonnelle & De Vleeschouwer, ICLR 2021, Section 2.3.1, Eq. (3).
    """
    _check_k(k)
    _check_choice(neuron_agg, "neuron_agg", ("topk_mean", "max"))
    _check_choice(class_agg, "class_agg", ("mean", "median"))
    n_samples = _check_layers(preacts, "preacts")
    _check_labels(labels, n_samples, "labels")
    if n_samples == 0:
        raise ValueError("c3 got zero samples: pass a non-empty probe sample.")
    _, codes = torch.unique(labels.to(preacts[0].device), return_inverse=True)
    n_classes = int(codes.max()) + 1
    ratios = []  # per layer, (n_classes, n_neurons_l)
    for layer in preacts:
        counts, _, m2 = _group_moments(layer, codes, n_classes)
        sigma_class = torch.sqrt(m2 / counts[:, None])
        sigma_all = layer.to(torch.float64).std(dim=0, correction=0)
        ratio = sigma_class / (sigma_all + eps)
        ratio[:, _dead_neurons(layer)] = 0.0
        ratios.append(ratio)
    if per_layer:
        return [_aggregate(_reduce_neurons(ratio, k, neuron_agg), class_agg) for ratio in ratios]
    return _aggregate(_reduce_neurons(torch.cat(ratios, dim=1), k, neuron_agg), class_agg)


# ----------------------------------------------------------------------------- c4, distance spread


def _c4_standardized(preact: Tensor, eps: float) -> Tensor | None:
    """One layer's representation for c4: live neurons, z-scored, shifted to fire on their top
    ~25 % and rectified; None when every neuron is dead.

    The percentile is ``p = max(min(round(100 - 1000 / N), 75), 0)`` with N the number of live
    neurons. Python's round (half to even) and round-half-away agree on every N: the only N with
    a .5 fraction are 16 (37.5 -> 38 either way) and 80, 400, 2000 (capped at 75).
    """
    live = preact[:, ~_dead_neurons(preact)].to(torch.float64)  # (n, N)
    if live.shape[1] == 0:
        return None
    z = (live - live.mean(dim=0)) / (live.std(dim=0, correction=0) + eps)
    percentile = max(min(round(100 - 1000 / live.shape[1]), 75), 0)
    return torch.relu(z - _percentile_linear(z, percentile))


def c4_distance_spread(
    preacts: list[Tensor],
    labels: Tensor,
    *,
    k: int = 5,
    class_agg: ClassAgg = "mean",
    pairs: Pairs = "unordered",
    per_layer: bool = False,
    eps: float = 1e-7,
) -> float | list[float]:
    """c4, layer-level spread of cosine distances: ``mean_i mean^k_l Sigma_{l,C_i} / (Sigma_{l,D} + eps)``.

    Per layer, dead neurons are dropped, each neuron is z-scored over D (ddof=0, + eps), shifted
    by its p-th percentile over D (p = 75 for 40 or more live neurons, so each neuron is active on
    its top 25 % of samples) and rectified. ``Sigma_{l,E}`` is the population standard deviation
    of the pairwise cosine distances among the samples of E in that space
    (:func:`pairwise_cosine_distance_std`).

    Parameters
    ----------
    preacts : list of Tensor, each of shape (n_samples, n_neurons_l)
        Pre-activations per layer.
    labels : Tensor of shape (n_samples,)
        Class label of each sample (any integer values).
    k : int
        Layers averaged per class (paper: 5 for WRN, 1 for VGG); clipped to the number of layers
        with a live neuron. A layer whose neurons are all dead is skipped (it has no representation).
    class_agg : {"mean", "median"}
        Aggregate over classes (paper: mean). A class whose spread is undefined (one sample, with
        ``pairs="unordered"``) is left out.
    pairs : {"unordered", "full_matrix"}
        Which distances enter Sigma; see :func:`pairwise_cosine_distance_std`.
    per_layer : bool
        If True, one value per layer: ``class_agg_i Sigma_{l,C_i} / (Sigma_{l,D} + eps)``, NaN for
        a skipped layer.
    eps : float
        Used in the z-score and the ratio.

    Returns
    -------
    float, or list of float (one per layer), >= 0. Higher = samples of a class are spread more,
    relative to the whole data = predicts better generalization.

    References
    ----------
    Carbonnelle & De Vleeschouwer, ICLR 2021, Section 2.3.2, Eq. (4).
    """
    _check_k(k)
    _check_choice(class_agg, "class_agg", ("mean", "median"))
    _check_choice(pairs, "pairs", ("unordered", "full_matrix"))
    n_samples = _check_layers(preacts, "preacts")
    _check_labels(labels, n_samples, "labels")
    if n_samples < 2:
        raise ValueError(f"c4 needs at least two samples, got {n_samples}: pass a larger probe sample.")
    labels = labels.to(preacts[0].device)
    classes = torch.unique(labels)
    table = torch.full((len(preacts), classes.shape[0]), math.nan, dtype=torch.float64)
    for layer_index, preact in enumerate(preacts):
        representation = _c4_standardized(preact, eps)
        if representation is None:
            continue  # every neuron dead: the layer has no representation to measure
        sigma_all = pairwise_cosine_distance_std(representation, pairs=pairs)
        for class_index, label in enumerate(classes):
            sigma_class = pairwise_cosine_distance_std(representation[labels == label], pairs=pairs)
            table[layer_index, class_index] = sigma_class / (sigma_all + eps)
    live_layers = ~table.isnan().all(dim=1)
    if not bool(live_layers.any()):
        raise ValueError("c4 is undefined: every neuron of every layer is dead (pre-activation < 0 on every sample).")
    defined_classes = ~table[live_layers].isnan().any(dim=0)
    if not bool(defined_classes.any()):
        raise ValueError(
            "c4 is undefined: no class has two samples; pass a probe sample with at least two per class."
        )
    table = table[:, defined_classes]  # (n_layers, n_defined_classes), NaN rows for skipped layers
    if per_layer:
        return [math.nan if row.isnan().all() else _aggregate(row, class_agg) for row in table]
    return _aggregate(topk_mean(table[live_layers].T, k), class_agg)
