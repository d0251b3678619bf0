"""Margin kernels: output margins, and first-order distances to the decision boundary at hidden layers.

Notation: logits ``f(x)``, true class ``y``, and ``c(x) = argmax_{j != y} f_j(x)`` the largest
other class. The margin is ``m(x) = f_y(x) - f_c(x)``: positive when ``x`` is classified correctly
(ties count as errors).

The distance from a layer's representation ``h = h_l(x)`` to the decision boundary between
``y`` and ``c`` is, to first order (Elsayed et al. 2018; Jiang et al. 2019, eq. 3),

    d_l(x) = m(x) / ||grad_h m(x)||_2,

with ``c`` held fixed while differentiating (the reference code of Jiang et al. 2019 stops the
gradient through the choice of ``c``) and ``||g||_2`` read as ``sqrt(eps + ||g||^2)`` as that code
does. Jiang et al. (2019, section 3.1) make it scale-free by dividing by the square root of the
layer's *total variation*, the trace of the covariance of its representations over the sample,

    nu_l = sum over features k of Var_x[h_l(x)_k],       d^_l(x) = d_l(x) / sqrt(nu_l),

each feature being one value of the (C, H, W) tensor. Only correctly classified samples enter the
margin distribution (the paper: "we only consider distances with positive sign"); ``nu_l`` is taken
over every sample of the probe, correct or not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["LayerMargins", "layer_margins", "output_margins", "inverse_squared_margin", "normalized_margin_statistic"]


def output_margins(logits: Tensor, labels: Tensor) -> Tensor:
    """``m(x) = f_y(x) - max_{j != y} f_j(x)`` for each row.

    Parameters
    ----------
    logits : Tensor
        (n, classes), classes >= 2.
    labels : Tensor
        (n,) int64 true classes.

    Returns
    -------
    Tensor
        (n,) margins, float64.
    """
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (n, classes) with at least 2 classes, got shape {tuple(logits.shape)}")
    logits = logits.detach().to(torch.float64)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return true - other


def inverse_squared_margin(
    margins: Tensor, *, quantile: float = 0.1, nonpositive: str = "floor", margin_floor: float = 1e-6
) -> float:
    """``1 / gamma^2`` with ``gamma`` the ``quantile`` of the margins (Jiang et al. 2020, eq. 22).

    ``gamma`` is the ``quantile`` of the margins with linear interpolation between order
    statistics (numpy's default; the reference code of Dziugaite et al. takes the
    ``floor(n / 10)``-th smallest, at most one order statistic away). Higher = smaller margin =
    predicts worse generalization.

    Degenerate case, ``gamma <= margin_floor``: at least a ``quantile`` of the samples are
    misclassified or within ``margin_floor`` of the boundary, and ``1 / gamma^2`` stops meaning
    anything (it would decrease again as ``gamma`` goes negative). ``nonpositive="floor"`` answers
    ``1 / margin_floor^2``, the worst value; ``"abs"`` uses ``|gamma|`` (floored too), as the
    reference code does.

    Parameters
    ----------
    margins : Tensor
        (n,) output margins, n >= 1.
    quantile : float
        In (0, 1).
    nonpositive : {"floor", "abs"}
    margin_floor : float
        > 0.

    Returns
    -------
    float
        In (0, 1 / margin_floor^2].
    """
    if margins.numel() == 0:
        raise ValueError("no margin to take a quantile of: the sample is empty")
    gamma = float(torch.quantile(margins.to(torch.float64), quantile))
    if nonpositive == "abs":
        gamma = abs(gamma)
    elif nonpositive != "floor":
        raise ValueError(f"nonpositive must be 'floor' or 'abs', got {nonpositive!r}")
    gamma = max(gamma, margin_floor)
    return 1.0 / (gamma * gamma)


@dataclass
class LayerMargins:
    """First-order margins of a sample at several layers.

    Attributes
    ----------
    names : list of str
        One per layer: ``"input"`` or the ReLU module's name.
    distances : Tensor
        (layers, n) float64 ``d_l(x) = m(x) / sqrt(eps + ||grad_h m||^2)``.
    total_variation : Tensor
        (layers,) float64 ``nu_l``, the summed per-feature variance over the n samples.
    margins : Tensor
        (n,) float64 output margins ``m(x)``.
    """

    names: list[str]
    distances: Tensor
    total_variation: Tensor
    margins: Tensor


class _Moments:
    """Per-feature sum and sum of squares in float64, shifted by the first batch's mean so that a
    large common offset does not cancel the variance away."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: Tensor | None = None
        self.sum: Tensor | None = None
        self.sumsq: Tensor | None = None

    def add(self, h: Tensor) -> None:
        flat = h.detach().reshape(h.shape[0], -1).to(torch.float64)
        if self.shift is None:
            self.shift = flat.mean(dim=0)
            self.sum = torch.zeros_like(self.shift)
            self.sumsq = torch.zeros_like(self.shift)
        centered = flat - self.shift
        self.sum += centered.sum(dim=0)
        self.sumsq += (centered * centered).sum(dim=0)
        self.n += flat.shape[0]

    def total_variation(self) -> float:
        mean = self.sum / self.n
        return float((self.sumsq / self.n - mean * mean).clamp_min(0).sum())  # population variance, as the paper's Cov


@contextmanager
def _recording(modules: Sequence[nn.Module], into: list[Tensor]) -> Iterator[None]:
    handles = [m.register_forward_hook(lambda _m, _a, out: into.append(out)) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_margins(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    layers: Sequence[tuple[str, nn.Module]],
    *,
    include_input: bool = True,
    eps: float = 1e-6,
    batch_size: int = 500,
) -> LayerMargins:
    """First-order distances to the boundary at the outputs of ``layers`` (and at the input).

    One forward and one backward pass per batch, the model in its current (eval) mode: samples
    do not interact, so the gradient of the batch's summed margin with respect to a layer's
    output holds each sample's own gradient. The model's parameters and buffers are not changed.

    Parameters
    ----------
    model : nn.Module
        The network, in eval mode.
    x : Tensor
        (n, ...) inputs.
    labels : Tensor
        (n,) true classes.
    layers : sequence of (str, nn.Module)
        Modules whose output is ``h_l`` (here: the ReLU after each chosen BatchNorm), each called
        once per forward pass.
    include_input : bool
        Put the input space first, named ``"input"``.
    eps : float
        Added to the squared gradient norm.
    batch_size : int
        Samples per pass.

    Returns
    -------
    LayerMargins
    """
    names = (["input"] if include_input else []) + [name for name, _ in layers]
    if not names:
        raise ValueError("no layer to take margins at: choose depth fractions or include the input")
    moments = [_Moments() for _ in names]
    distances, margins = [], []
    for xb, yb in zip(x.split(batch_size), labels.split(batch_size)):
        outputs: list[Tensor] = []
        with torch.enable_grad(), _recording([m for _, m in layers], outputs):
            xb = xb.detach().clone().requires_grad_(True)
            logits = model(xb)  # (b, classes)
            if len(outputs) != len(layers):
                raise ValueError(
                    f"expected one output from each of the {len(layers)} layers per forward pass, recorded {len(outputs)}; "
                    "a layer module is called more than once"
                )
            other = logits.detach().scatter(1, yb[:, None], float("-inf")).argmax(dim=1)  # c(x), held fixed
            margin = logits.gather(1, yb[:, None]).squeeze(1) - logits.gather(1, other[:, None]).squeeze(1)
            spaces = ([xb] if include_input else []) + outputs
            grads = torch.autograd.grad(margin.sum(), spaces, allow_unused=True)
        row = []
        for k, (h, g) in enumerate(zip(spaces, grads)):
            g = torch.zeros_like(h) if g is None else g  # the margin does not depend on this layer
            norm = torch.sqrt(eps + g.detach().reshape(g.shape[0], -1).to(torch.float64).pow(2).sum(dim=1))
            row.append(margin.detach().to(torch.float64) / norm)
            moments[k].add(h)
        distances.append(torch.stack(row))  # (layers, b)
        margins.append(margin.detach().to(torch.float64))
    return LayerMargins(
        names=names,
        distances=torch.cat(distances, dim=1),
        total_variation=torch.tensor([m.total_variation() for m in moments], dtype=torch.float64),
        margins=torch.cat(margins),
    )


def normalized_margin_statistic(result: LayerMargins, *, quantile: float = 0.5) -> float:
    """Mean over layers of ``log q_l``, ``q_l`` the ``quantile`` of ``d^_l = d_l / sqrt(nu_l)`` over
    the correctly classified samples (``m(x) > 0``).

    Jiang et al. (2019) regress the generalization gap on the log of quartiles of these
    distributions at four layers; a per-model measure cannot hold a regression fitted across
    models, so this is the equal-weight mean of one log quantile per layer ("working in log space
    ... effectively a product of margins"). Higher = larger normalized margins = predicts better
    generalization.

    Raises
    ------
    ValueError
        When no sample is classified correctly, or a layer's representations do not vary over the
        sample (``nu_l = 0``: the normalization is undefined).
    """
    correct = result.margins > 0
    if not bool(correct.any()):
        raise ValueError("no sample is classified correctly, so there is no positive margin to summarize")
    logs = []
    for name, d, nu in zip(result.names, result.distances, result.total_variation.tolist()):
        if not nu > 0:
            raise ValueError(f"layer {name!r} has the same representation for every sample (total variation 0)")
        q = float(torch.quantile(d[correct], quantile)) / math.sqrt(nu)
        logs.append(math.log(q))
    return sum(logs) / len(logs)
