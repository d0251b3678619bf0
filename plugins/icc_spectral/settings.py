"""Settings of the heavy-tailed self-regularization measures, with WeightWatcher's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SpectralSettings(BaseModel):
    """How each layer's ESD is built and fitted (see :mod:`icc_spectral.esd`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_eigenvalues: int = Field(
        10, ge=2, description="a layer with fewer eigenvalues is not fitted and not averaged (WeightWatcher's min_evals)"
    )
    threshold: float = Field(1e-5, ge=0, description="eigenvalues at or below this are left out (WeightWatcher's)")
    conv2d_norm: bool = Field(
        True, description="scale each kh x kw slice of a convolution by sqrt(kh * kw / 2) (WeightWatcher's default); changes alpha_hat only"
    )
    fitter: Literal["builtin", "powerlaw"] = Field(
        "builtin", description="the closed-form MLE with KS x_min written here, or the powerlaw package (optional extra)"
    )
