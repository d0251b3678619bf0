"""Heavy-tailed self-regularization (Martin & Mahoney): power-law exponents of the layers' spectra.

For every convolution and linear layer, the eigenvalues of ``W^T W`` (a convolution as its
``kh * kw`` slices of out x in, eigenvalues pooled) are fitted by a power law ``p(lambda) ~
lambda^(-alpha)`` above an ``x_min`` chosen by the Kolmogorov-Smirnov distance (maximum
likelihood, Clauset et al. 2009). Two measures, both lower = more heavy-tailed = better trained
= predicts better generalization (Martin & Mahoney 2021), so both are registered with
``higher_is_better=False``:

- ``htsr_alpha``: the mean of ``alpha_l`` over the fitted layers;
- ``htsr_alpha_hat``: the mean of ``alpha_l * log10 lambda_max,l`` over the fitted layers
  (WeightWatcher's ``alpha_weighted``).

Value policy for small layers: a layer with fewer than ``min_eigenvalues`` (10) eigenvalues above
1e-5 is not fitted and does not enter either mean; small CNNs have such layers (the classifier of
a 4-class network has 4). :func:`icc_spectral.esd.spectral_report` lists every layer with its
eigenvalue count, fit, or the reason it was left out; when no layer can be fitted the measures
are not applicable, and the reason names each layer's count. Readings of the fit are in
:mod:`icc_spectral.powerlaw_fit`, of the spectra in :mod:`icc_spectral.esd`.

References
----------
Martin & Mahoney, "Implicit self-regularization in deep neural networks: evidence from random
matrix theory and implications for learning", JMLR 22 (2021).
Martin, Peng & Mahoney, "Predicting trends in the quality of state-of-the-art neural networks
without access to training or testing data", Nature Communications 12 (2021).
Clauset, Shalizi & Newman, "Power-law distributions in empirical data", SIAM Review 51 (2009).
"""

from __future__ import annotations

import math

from icc_bench import Measure, MeasureContext, NotApplicable, hookimpl
from icc_spectral.esd import LayerSpectrum, spectral_report
from icc_spectral.settings import SpectralSettings

__version__ = "0.1.0"

FAMILY = "heavy-tailed spectra"


def _fitted_layers(ctx: MeasureContext, settings: SpectralSettings) -> list[LayerSpectrum]:
    report = spectral_report(
        ctx.model, min_eigenvalues=settings.min_eigenvalues, threshold=settings.threshold,
        conv2d_norm=settings.conv2d_norm, fitter=settings.fitter,
    )
    fitted = [layer for layer in report if layer.fit is not None]
    if not fitted:
        counts = ", ".join(f"{layer.name}: {layer.skipped}" for layer in report) or "the model has no convolution or linear layer"
        raise NotApplicable(f"no layer could be fitted ({counts})")
    return fitted


def mean_alpha(ctx: MeasureContext, settings: SpectralSettings) -> float:
    """Mean over layers of the power-law exponent alpha of the eigenvalues of W^T W (Martin & Mahoney)."""
    fitted = _fitted_layers(ctx, settings)
    return sum(layer.fit.alpha for layer in fitted) / len(fitted)


def mean_alpha_hat(ctx: MeasureContext, settings: SpectralSettings) -> float:
    """Mean over layers of alpha * log10(lambda_max), WeightWatcher's alpha_weighted (Martin et al. 2021)."""
    fitted = _fitted_layers(ctx, settings)
    return sum(layer.fit.alpha * math.log10(layer.lambda_max) for layer in fitted) / len(fitted)


@hookimpl
def icc_bench_register_measures(registry) -> None:
    for name, fn in (("htsr_alpha", mean_alpha), ("htsr_alpha_hat", mean_alpha_hat)):
        registry.add(
            Measure(name=name, family=FAMILY, higher_is_better=False, needs_hierarchy=False, fn=fn, settings=SpectralSettings())
        )
