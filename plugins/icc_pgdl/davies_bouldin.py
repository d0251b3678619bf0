"""First place (Natekar & Sharma), part 1: the Davies-Bouldin index of the first convolution's
output, the classes as clusters.

Readings (the package docstring gives the sources):

- features: the output of the first convolution a forward pass calls, max pooled over H, W by a
  ``pool`` x ``pool`` window of the same stride (no padding; ``pool`` clipped to the map's side),
  flattened to ``C * floor(H / pool) * floor(W / pool)`` values per image;
- images: windows of ``window_size`` training images from a seeded stream (:mod:`icc_pgdl.sampling`),
  each augmented (flip, contrast, zoom-crop; :func:`natekar_augment`) when ``augment`` is set;
- the index of each window, with the classes present in it as clusters, averaged over windows. A
  window holding a single class (or a single image per class) has no index and is left out; none
  left is ``NotApplicable``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icc_bench import NotApplicable
from icc_pgdl.augment import adjust_contrast, draw_uniform, flip_left_right, zoom
from icc_pgdl.forward import first_convolution_output
from icc_pgdl.sampling import seeded_stream
from icc_pgdl.settings import DaviesBouldinSettings, PairReduction

#: Their zoom scales, ``np.arange(0.85, 1.0, 0.01)``: 16 values, the last one 1.0 by float rounding.
ZOOM_SCALES = tuple(0.85 + 0.01 * i for i in range(16))
# np.allclose(a, 0) with its default atol: the test their code (and scikit-learn's) makes for "all zero".
_ALL_ZERO = 1e-8


def davies_bouldin(features: Tensor, labels: Tensor, *, pair_reduction: PairReduction = "mean_all") -> float:
    """Davies-Bouldin index of the clusters that ``labels`` defines on the rows of ``features``.

    For cluster k with centroid ``c_k``, the scatter ``S_k`` is the mean Euclidean distance of its
    members to ``c_k``, and ``M_kj = ||c_k - c_j||``. With ``R_kj = (S_k + S_j) / M_kj`` and
    ``R_kj = 0`` where ``M_kj = 0`` (the diagonal, and coincident centroids: scikit-learn's
    convention, which the winners' copy keeps), the index is the mean over the K clusters of

    - ``"max"``: ``max_{j != k} R_kj``, the textbook index (Davies & Bouldin 1979;
      ``sklearn.metrics.davies_bouldin_score``);
    - ``"mean_all"``: ``(1 / K) sum_{j != k} R_kj``, the mean over all K clusters including the
      zero diagonal, as the winners' competition code computes it (``np.nanmean`` of the row).

    When every ``S_k`` or every ``M_kj`` is (within 1e-8 of) zero the index is 0, as in both codes.

    Parameters
    ----------
    features : Tensor of shape (n_samples, n_features)
    labels : Tensor of shape (n_samples,)
        Integer cluster labels; between 2 and n_samples - 1 distinct values (scikit-learn's check).
    pair_reduction : {"mean_all", "max"}

    Returns
    -------
    float
        >= 0; lower: tighter clusters, further apart. ``"mean_all"`` <= ``"max"``.

    References
    ----------
    D. L. Davies and D. W. Bouldin, "A cluster separation measure", IEEE TPAMI 1(2), 1979.
    """
    if features.ndim != 2:
        raise ValueError(f"features has shape {tuple(features.shape)}: expected (n_samples, n_features).")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels has shape {tuple(labels.shape)}: expected ({features.shape[0]},), one per row.")
    if pair_reduction not in ("mean_all", "max"):
        raise ValueError(f"pair_reduction={pair_reduction!r} is not supported: use 'mean_all' or 'max'.")
    _, codes, counts = torch.unique(labels.to(features.device), return_inverse=True, return_counts=True)
    n_clusters, n_samples = counts.shape[0], features.shape[0]
    if not 1 < n_clusters < n_samples:
        raise ValueError(
            f"the Davies-Bouldin index needs 2 to n_samples - 1 = {n_samples - 1} clusters, got {n_clusters}."
        )
    x = features.to(torch.float64)
    counts = counts.to(torch.float64)
    centroids = torch.zeros(n_clusters, x.shape[1], dtype=torch.float64, device=x.device)
    centroids = centroids.index_put_((codes,), x, accumulate=True) / counts[:, None]  # (K, d)
    to_centroid = torch.linalg.vector_norm(x - centroids[codes], dim=1)  # (n,)
    scatter = torch.zeros(n_clusters, dtype=torch.float64, device=x.device)
    scatter = scatter.index_put_((codes,), to_centroid, accumulate=True) / counts  # (K,)
    separation = torch.linalg.vector_norm(centroids[:, None, :] - centroids[None, :, :], dim=2)  # (K, K)
    if bool((scatter.abs() <= _ALL_ZERO).all()) or bool((separation.abs() <= _ALL_ZERO).all()):
        return 0.0
    separation = torch.where(separation == 0, torch.full_like(separation, torch.inf), separation)
    ratios = (scatter[:, None] + scatter[None, :]) / separation  # (K, K), 0 on the diagonal
    per_cluster = ratios.max(dim=1).values if pair_reduction == "max" else ratios.mean(dim=1)
    return float(per_cluster.mean())


def natekar_augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """The first-place augmentation of commit 8e1134e, applied to each image independently.

    In order: a left-right flip with probability 1/2; a contrast factor uniform in [0.7, 1.0)
    (``tf.image.random_contrast(x, 0.7, 1.0)``); with probability 1/2, a zoom-crop with a scale
    drawn uniformly from :data:`ZOOM_SCALES`. All draws come from ``generator`` (CPU).
    """
    n = x.shape[0]
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    contrast = draw_uniform(n, 0.7, 1.0, generator)
    zoomed = torch.rand(n, generator=generator) >= 0.5  # theirs: keep the image when the draw is < 0.5
    scale_index = torch.randint(0, len(ZOOM_SCALES), (n,), generator=generator)
    scales = torch.tensor(ZOOM_SCALES, dtype=torch.float32)[scale_index]
    x = torch.where(flips.view(-1, 1, 1, 1), flip_left_right(x), x)
    x = adjust_contrast(x, contrast)
    return torch.where(zoomed.to(x.device).view(-1, 1, 1, 1), zoom(x, scales), x)


def pooled_features(feature_maps: Tensor, pool: int) -> Tensor:
    """(n, C * floor(H / p) * floor(W / p)) max-pooled, flattened maps, ``p = min(pool, H, W)``."""
    side = min(pool, *feature_maps.shape[-2:])
    return F.max_pool2d(feature_maps, kernel_size=side, stride=side).flatten(1)


def first_layer_davies_bouldin(
    model: nn.Module, x: Tensor, labels: Tensor, settings: DaviesBouldinSettings, generator: torch.Generator
) -> float:
    """Mean over windows of the Davies-Bouldin index of the first convolution's pooled output.

    Parameters
    ----------
    model : nn.Module
        In the mode it should be read in (eval); not modified.
    x : Tensor of shape (N, C, H, W)
        Training images.
    labels : Tensor of shape (N,)
        Their training labels.
    settings : DaviesBouldinSettings
    generator : torch.Generator
        CPU generator: the stream of windows first, then the augmentation of every image in it.
    """
    stream = seeded_stream(x, labels, settings.windows * settings.window_size, generator)
    images = x[stream.to(x.device)]
    if settings.augment:
        images = natekar_augment(images, generator)
    # The whole stream goes through the stem batch_size images at a time, pooled as it comes out.
    features = torch.cat([
        pooled_features(first_convolution_output(model, chunk, batch_size=settings.batch_size), settings.pool)
        for chunk in images.split(settings.batch_size)
    ])
    stream_labels = labels[stream.to(labels.device)]
    values = []
    for window_features, window_labels in zip(features.split(settings.window_size), stream_labels.split(settings.window_size)):
        if not 1 < torch.unique(window_labels).numel() < len(window_labels):
            continue  # one class, or one image per class: no Davies-Bouldin index
        values.append(davies_bouldin(window_features, window_labels, pair_reduction=settings.pair_reduction))
    if not values:
        raise NotApplicable("every window of training images holds a single class; the Davies-Bouldin index needs two")
    return sum(values) / len(values)
