"""Empirical spectral densities of a network's layers, and their power-law fits, layer by layer.

A layer is every convolution and linear layer, read from its raw kernel (no BatchNorm folding,
as WeightWatcher reads it). Its ESD is the set of eigenvalues of ``W^T W``, i.e. the squared
singular values of ``W``:

- a linear layer: ``W`` is (out, in), ``min(out, in)`` eigenvalues;
- a convolution (out, in, kh, kw): ``kh * kw`` matrices ``W[:, :, i, j]`` of out x in, their
  eigenvalues pooled into one ESD of ``kh * kw * min(out, in)`` values (Martin & Mahoney;
  WeightWatcher's default). With ``conv2d_norm`` each slice is scaled by ``sqrt(kh * kw / 2)``
  first, as WeightWatcher does by default; this scales the eigenvalues by ``kh * kw / 2`` and so
  changes ``log10 lambda_max`` (and alpha_hat), never alpha.

Eigenvalues at or below ``threshold`` (WeightWatcher's 1e-5) are left out of the fit. A layer
keeps fewer than ``min_eigenvalues`` (WeightWatcher's 10) is not fitted: it is listed in the
report with the reason, and the measures average over the fitted layers only. On the quick
population's VGG (width 8, 4 classes), for instance, the classifier has 4 eigenvalues and is not
fitted; every convolution (27 to 576 eigenvalues) is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icc_spectral.powerlaw_fit import PowerLawFit, fit_power_law, fit_with_powerlaw_package

__all__ = ["LayerSpectrum", "layer_eigenvalues", "spectral_report"]

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerSpectrum:
    """One layer's ESD summary and fit.

    Attributes
    ----------
    name : str
        Module name.
    n_eigenvalues : int
        Eigenvalues above the threshold.
    lambda_max : float
        The largest eigenvalue (0.0 when there is none).
    fit : PowerLawFit or None
        None when the layer was not fitted; ``skipped`` says why.
    skipped : str or None
    """

    name: str
    n_eigenvalues: int
    lambda_max: float
    fit: PowerLawFit | None
    skipped: str | None = None


def layer_eigenvalues(weight: Tensor, *, conv2d_norm: bool = True) -> Tensor:
    """Eigenvalues of ``W^T W`` for a linear kernel, pooled over the ``kh * kw`` slices of a convolution.

    Parameters
    ----------
    weight : Tensor
        (out, in) or (out, in, *kernel).
    conv2d_norm : bool
        Scale each convolution slice by ``sqrt(prod(kernel) / 2)`` (WeightWatcher's default).

    Returns
    -------
    Tensor
        float64 eigenvalues, ascending; ``prod(kernel) * min(out, in)`` of them.
    """
    w = weight.detach().to(torch.float64).cpu()
    if w.ndim == 2:
        slices = w[None]  # (1, out, in)
    elif w.ndim > 2:
        slices = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)  # (kh * kw, out, in)
        if conv2d_norm:
            slices = slices * (slices.shape[0] / 2.0) ** 0.5  # slices.shape[0] = prod(kernel)
    else:
        raise ValueError(f"a weight matrix or kernel has at least 2 dimensions, got shape {tuple(w.shape)}")
    singular = torch.linalg.svdvals(slices)  # (slices, min(out, in)), batched
    return torch.sort((singular * singular).flatten()).values


def spectral_report(
    model: nn.Module,
    *,
    min_eigenvalues: int = 10,
    threshold: float = 1e-5,
    conv2d_norm: bool = True,
    fitter: str = "builtin",
) -> list[LayerSpectrum]:
    """The ESD and power-law fit of every convolution and linear layer, in ``named_modules()`` order.

    Parameters
    ----------
    model : nn.Module
    min_eigenvalues : int
        Fewest eigenvalues (above ``threshold``) a layer needs to be fitted.
    threshold : float
        Eigenvalues ``<= threshold`` are left out.
    conv2d_norm : bool
        See :func:`layer_eigenvalues`.
    fitter : {"builtin", "powerlaw"}
        :func:`~icc_spectral.powerlaw_fit.fit_power_law`, or the ``powerlaw`` package (the
        optional extra ``icc-bench[spectral]``; see
        :func:`~icc_spectral.powerlaw_fit.fit_with_powerlaw_package` for its limits).

    Returns
    -------
    list of LayerSpectrum
        One per layer; those not fitted say why.
    """
    fit = {"builtin": fit_power_law, "powerlaw": fit_with_powerlaw_package}.get(fitter)
    if fit is None:
        raise ValueError(f"fitter must be 'builtin' or 'powerlaw', got {fitter!r}")
    report = []
    for name, module in model.named_modules():
        if not isinstance(module, WEIGHT_LAYERS):
            continue
        values = layer_eigenvalues(module.weight, conv2d_norm=conv2d_norm)
        kept = values[values > threshold]
        lambda_max = float(kept[-1]) if kept.numel() else 0.0
        if kept.numel() < min_eigenvalues:
            reason = f"{kept.numel()} eigenvalues above {threshold:g}, fewer than min_eigenvalues = {min_eigenvalues}"
            report.append(LayerSpectrum(name, kept.numel(), lambda_max, None, reason))
        elif bool((kept == kept[0]).all()):
            report.append(LayerSpectrum(name, kept.numel(), lambda_max, None, "all its eigenvalues are equal"))
        else:
            report.append(LayerSpectrum(name, kept.numel(), lambda_max, fit(kept)))
    return report
