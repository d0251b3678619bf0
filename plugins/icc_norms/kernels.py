"""The norm measures of Jiang et al. (2020), Appendix C, as pure functions of weight matrices.

Every kernel takes the layers' weight matrices ``W_1 ... W_d`` (convolutions reshaped to
out x (in * kernel), see :func:`icc_norms.batchnorm.weight_layers`), accumulates in float64 and
returns a Python float. Jiang et al.'s equation numbers are given with each.

What we leave out, on purpose: Jiang et al. finally rescale every measure by the training-set
size m (``sqrt(mu / m)``, or ``(mu - log m) / 2`` for the ``log_`` ones). Within one population m
is the same for every model and the rescaling is monotone, so rankings, and hence every score
icc-bench computes, are unchanged; the values here are the unscaled ``mu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["frobenius_distance", "log_prod_of_spec", "log_sum_of_fro", "param_norm", "path_norm"]


def _float64(matrices: Sequence[Tensor]) -> list[Tensor]:
    if len(matrices) == 0:
        raise ValueError("the network has no convolution or linear layer, so it has no weight matrix to measure")
    return [w.detach().to(torch.float64) for w in matrices]


def log_prod_of_spec(matrices: Sequence[Tensor]) -> float:
    """Log of the product of squared spectral norms (Jiang et al. 2020, eq. 32, "log-prod-of-spec").

    ``mu = sum_i log ||W_i||_2^2``, with ``||W||_2`` the largest singular value of the matrix
    (for a convolution, of its out x (in * kernel) reshaping, as in Jiang et al.'s code; not the
    operator norm of the convolution itself). Higher = more complex = predicts worse.

    Parameters
    ----------
    matrices : sequence of Tensor
        d >= 1 two-dimensional weight matrices.

    Returns
    -------
    float
        In (-inf, inf); -inf when some layer is all zeros (the network is then constant).
    """
    total = 0.0
    for w in _float64(matrices):
        sigma = float(torch.linalg.matrix_norm(w, ord=2))
        total += 2.0 * math.log(sigma) if sigma > 0 else -math.inf
    return total


def log_sum_of_fro(matrices: Sequence[Tensor]) -> float:
    """Log of the balanced sum of squared Frobenius norms (Jiang et al. 2020, eq. 39, "log-sum-of-fro").

    ``mu = log(d * (prod_i ||W_i||_F^2)^(1/d)) = log d + (1/d) sum_i log ||W_i||_F^2``: the sum
    of squared Frobenius norms after rescaling the layers of a ReLU network so that all are equal
    (which leaves its function unchanged), the smallest such sum by the AM-GM inequality.

    Parameters
    ----------
    matrices : sequence of Tensor
        d >= 1 weight matrices.

    Returns
    -------
    float
        -inf when some layer is all zeros.
    """
    ws = _float64(matrices)
    logs = [math.log(f) if (f := float((w * w).sum())) > 0 else -math.inf for w in ws]
    return math.log(len(ws)) + sum(logs) / len(ws)


def param_norm(matrices: Sequence[Tensor]) -> float:
    """Sum of squared Frobenius norms (Jiang et al. 2020, eq. 42, "param-norm").

    ``mu = sum_i ||W_i||_F^2``, the squared L2 norm of all weights; >= 0.
    """
    return float(sum((w * w).sum() for w in _float64(matrices)))


def frobenius_distance(matrices: Sequence[Tensor], initial: Sequence[Tensor]) -> float:
    """Squared Frobenius distance from initialization (Jiang et al. 2020, eq. 40, "frob-distance").

    ``mu = sum_i ||W_i - W_i^0||_F^2`` with ``W_i^0`` the same layer's weights at initialization;
    >= 0, and 0 for an untrained network.

    Parameters
    ----------
    matrices, initial : sequence of Tensor
        The trained and initial weight matrices, layer by layer, of equal shapes.
    """
    ws, w0s = _float64(matrices), _float64(initial)
    if len(ws) != len(w0s) or any(w.shape != w0.shape for w, w0 in zip(ws, w0s)):
        raise ValueError(
            f"the initial weights do not match the trained ones layer by layer ({[tuple(w.shape) for w in w0s]} "
            f"vs {[tuple(w.shape) for w in ws]}); the epoch-0 snapshot belongs to another architecture"
        )
    return float(sum(((w - w0) ** 2).sum() for w, w0 in zip(ws, w0s)))


def path_norm(network: nn.Module, input_shape: Sequence[int]) -> float:
    """The squared path norm (Jiang et al. 2020, eq. 44, "path-norm").

    ``mu = sum_k f_{w^2}(1)[k]``: the network with every parameter squared (weights, biases,
    the affine maps of unfolded BatchNorms), applied to an all-ones input, its outputs summed.
    For a ReLU network whose parameters are all >= 0 every ReLU is the identity, so this is
    ``sum over input-output paths of the product of the squared weights on the path`` (biases
    count as paths from a constant input). Max pooling keeps its largest input, average pooling
    averages, as in the forward pass.

    Parameters
    ----------
    network : nn.Module
        A BatchNorm-free network (see :func:`icc_norms.batchnorm.convert_batchnorm`), float64,
        eval mode; it is not modified (a copy is squared).
    input_shape : sequence of int
        One input's shape, e.g. (C, H, W).

    Returns
    -------
    float
        >= 0.
    """
    import copy

    squared = copy.deepcopy(network).eval()
    with torch.no_grad():
        for p in squared.parameters():
            p.copy_(p * p)
        first = next(squared.parameters())
        ones = torch.ones((1, *input_shape), dtype=first.dtype, device=first.device)
        return float(squared(ones).sum())
