"""Third place (Lassance et al.): label variation on latent geometry graphs, its rate over the last layers.

For a batch of training images and one layer's representations, a *latent geometry graph* links
each image to its k most cosine-similar others; the *label variation* is how much edge weight
joins images of different classes, ``tr(Y^T L Y)`` with ``L`` the graph's Laplacian and ``Y`` the
one-hot labels. The measure is the mean absolute change of the label variation from one
representation to the next, over the inputs of the last weight layers and the output, with the
median taken over batches (their "VR" score).

Readings (the package docstring gives the sources): batches of ``batch_size`` images in a seeded
order (:mod:`icc_pgdl.sampling`), the incomplete last one dropped, at most ``batches`` of them; a
training set smaller than one batch gives one graph of all of it. The label variation is divided by
their constant ``2 * 50 * 1000``, which changes no ranking.

On easy data the measure can be exactly 0: on the quick population's first model (training
accuracy 1.0 on the synthetic hierarchy, 4 classes), every one of 500 training images has its 20
nearest neighbours in its own class in all three representations, so no edge crosses classes.
Models that all score 0 tie.
"""

from __future__ import annotations

import statistics

import torch
from torch import Tensor, nn

from icc_pgdl.forward import last_weight_layer_inputs
from icc_pgdl.sampling import seeded_stream
from icc_pgdl.settings import LabelVariationSettings

#: Their scale of the label variation (``smoothness / (2 * 50 * 1000)``).
VARIATION_SCALE = 2 * 50 * 1000
# tf.math.l2_normalize's floor on the squared norm: a zero row stays zero.
_L2_EPSILON = 1e-12


def knn_cosine_graph(features: Tensor, k: int) -> Tensor:
    """Symmetric weighted adjacency of the k-nearest-neighbour cosine-similarity graph.

    With rows scaled to unit norm (a zero row stays zero), ``S = clip(X X^T, 0, 1)``. Row i keeps
    the entries ``S_ij >= t_i``, ``t_i`` its (k + 1)-th largest value (itself included, so k
    others; ties keep more); the diagonal is dropped; an edge kept by either end is kept
    (``clip(A + A^T, 0, 1)``) and weighs ``S_ij``. ``k`` is clipped to ``n - 1``.

    Parameters
    ----------
    features : Tensor of shape (n, ...)
        One representation per sample, flattened.
    k : int
        Neighbours per sample, >= 1.

    Returns
    -------
    Tensor of shape (n, n)
        float64, symmetric, zero diagonal, entries in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k={k} must be at least 1 (neighbours per sample).")
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a graph needs at least 2 samples, got {n}.")
    unit = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).square().clamp(min=_L2_EPSILON).sqrt()
    similarity = (unit @ unit.T).clamp(0, 1)  # (n, n)
    thresholds = similarity.topk(min(k, n - 1) + 1, dim=1).values[:, -1:]  # (n, 1)
    kept = similarity >= thresholds
    kept.fill_diagonal_(False)
    kept = kept | kept.T
    return torch.where(kept, similarity, torch.zeros_like(similarity))


def label_variation(adjacency: Tensor, labels: Tensor) -> float:
    """``tr(Y^T L Y)`` for the Laplacian ``L = D - W`` of ``adjacency`` and one-hot labels ``Y``.

    Since ``Y^T L Y = sum_ij W_ij (y_i y_i^T - y_i y_j^T)`` summed over ordered pairs, its trace is
    ``sum_{i, j: label_i != label_j} W_ij``: the weight of the edges between classes, each counted
    from both ends. 0 when no edge joins two classes.

    Parameters
    ----------
    adjacency : Tensor of shape (n, n)
        Symmetric non-negative weights ``W``.
    labels : Tensor of shape (n,)
        Integer labels.

    Returns
    -------
    float
        >= 0; higher: the classes are more entangled in the graph.
    """
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency has shape {tuple(adjacency.shape)}: expected a square (n, n) matrix.")
    if labels.ndim != 1 or labels.shape[0] != adjacency.shape[0]:
        raise ValueError(f"labels has shape {tuple(labels.shape)}: expected ({adjacency.shape[0]},).")
    labels = labels.to(adjacency.device)
    between = labels[:, None] != labels[None, :]
    return float(adjacency.to(torch.float64)[between].sum())


def variation_rate(representations: list[Tensor], labels: Tensor, k: int) -> float:
    """Mean of ``|v_r - v_{r+1}|`` over consecutive representations, ``v`` the scaled label variation.

    One representation alone has no change: its rate is 0.
    """
    variations = [label_variation(knn_cosine_graph(r, k), labels) / VARIATION_SCALE for r in representations]
    changes = [abs(a - b) for a, b in zip(variations, variations[1:])]
    return sum(changes) / len(changes) if changes else 0.0


def last_layers_variation_rate(
    model: nn.Module, x: Tensor, labels: Tensor, settings: LabelVariationSettings, generator: torch.Generator
) -> float:
    """Median over batches of :func:`variation_rate` on the last weight layers' inputs and the output.

    Parameters
    ----------
    model : nn.Module
        In the mode it should be read in (eval); not modified.
    x : Tensor of shape (N, C, H, W)
        Training images.
    labels : Tensor of shape (N,)
        Their training labels.
    settings : LabelVariationSettings
    generator : torch.Generator
        CPU generator of the seeded order of the samples.
    """
    order = seeded_stream(x, labels, len(x), generator)
    size = min(settings.batch_size, len(x))
    rates = []
    for batch in order.split(size)[: settings.batches]:
        if len(batch) < size:
            break  # their drop_remainder=True
        inputs, output = last_weight_layer_inputs(model, x[batch.to(x.device)], settings.last_layers)
        rates.append(variation_rate([*inputs, output], labels[batch.to(labels.device)], settings.k))
    return statistics.median(rates)  # numpy's median: the mean of the two middle values of an even count
