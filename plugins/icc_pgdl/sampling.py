"""Seeded sampling of the training set that does not depend on the order of its samples.

The winners read their training data in the order the competition's loader gave it (batches,
shuffles, ``take``). A measure here must not depend on the order of the training samples (the
measure contract), so every sample sequence is built from a *canonical order* that depends only on
the samples' contents: the images sorted by a fixed random projection of their pixels, ties broken
by label. A seeded permutation of that order then plays the part of the winners' shuffled stream.
Two samples can only swap places in the canonical order if they have the same pixels and label,
and then swapping them changes nothing a measure computes.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A fixed seed for the projection direction: the canonical order is a property of the data, not
# of the measure's seed (which then permutes it).
_PROJECTION_SEED = 20201101


def canonical_order(x: Tensor, labels: Tensor) -> Tensor:
    """Indices that sort the samples by contents: a random projection of the pixels, then label.

    Parameters
    ----------
    x : Tensor of shape (n, ...)
        The samples (images); the projection is taken in float64 on their device.
    labels : Tensor of shape (n,)
        Integer labels; break ties between samples with the same projection.

    Returns
    -------
    Tensor of shape (n,)
        int64 indices on the CPU: ``x[order]`` is the same tensor whatever order ``x`` came in.
    """
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels has shape {tuple(labels.shape)}: expected ({x.shape[0]},), one label per sample.")
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    direction = torch.randn(flat.shape[1], generator=torch.Generator().manual_seed(_PROJECTION_SEED), dtype=torch.float64)
    key = (flat @ direction.to(flat.device)).cpu()  # (n,)
    by_label = torch.argsort(labels.cpu(), stable=True)
    return by_label[torch.argsort(key[by_label], stable=True)]  # primary key: projection; secondary: label


def seeded_stream(x: Tensor, labels: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """``length`` training indices: seeded permutations of the canonical order, one after another.

    The first ``n`` indices are one permutation of all samples, the next ``n`` a fresh one, and
    so on (a shuffled dataset repeated, as ``dataset.repeat().shuffle()``); a ``length`` below
    ``n`` is a seeded subset without repeats.

    Returns
    -------
    Tensor of shape (length,)
        int64 indices into ``x``, on the CPU.
    """
    order = canonical_order(x, labels)
    n = order.shape[0]
    if n == 0:
        raise ValueError("the training set is empty: there is nothing to sample.")
    epochs = [order[torch.randperm(n, generator=generator)] for _ in range(-(-length // n))]
    return torch.cat(epochs)[:length]
