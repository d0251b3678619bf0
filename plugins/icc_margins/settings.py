"""Settings of the margin measures, with the papers' defaults where they give one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _MarginSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_samples: int | None = Field(
        None, ge=1, description="training samples per class (stratified, seeded) the margins are taken over; None = all (the papers')"
    )


class OutputMarginSettings(_MarginSettings):
    """``1 / gamma^2``, gamma a low quantile of the output margins (Jiang et al. 2020, eq. 22)."""

    quantile: float = Field(0.1, gt=0, lt=1, description="which quantile of the margins is gamma (Jiang et al.: the 10th percentile)")
    nonpositive: Literal["floor", "abs"] = Field(
        "floor",
        description=(
            "gamma <= margin_floor (more than `quantile` of the training samples misclassified or on the boundary): "
            "'floor' answers 1 / margin_floor^2, the worst value, shared by all such models; 'abs' takes |gamma| as the "
            "reference code of Dziugaite et al. 2020 does (a badly fitted model can then look simple)"
        ),
    )
    margin_floor: float = Field(1e-6, gt=0, description="the smallest gamma used: the measure is at most 1 / margin_floor^2")


class LayerMarginSettings(_MarginSettings):
    """Normalized margins at hidden layers (Jiang et al. 2019), summarized by one quantile per layer."""

    quantile: float = Field(
        0.5, gt=0, lt=1, description="quantile of each layer's normalized margins over correctly classified samples (median: Q2 of the paper's signature)"
    )
    depth_fractions: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75),
        description=(
            "which probe layers: for each fraction f, the ceil(f * L)-th of the L BatchNorm-ReLU layers (the paper's three "
            "equally spaced hidden layers; on the paper's VGG, the outputs of stages 1-3)"
        ),
    )
    include_input: bool = Field(True, description="also the margin in input space (the paper's layer 0)")
    eps: float = Field(1e-6, gt=0, description="the gradient norm is sqrt(eps + ||g||^2) (the reference code's 1e-6)")

    @field_validator("depth_fractions")
    @classmethod
    def _fractions_in_unit_interval(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f <= 1 for f in v):
            raise ValueError(f"every depth fraction must be in (0, 1], got {v}")
        if list(v) != sorted(set(v)):
            raise ValueError(f"depth fractions must be strictly increasing, got {v}")
        return v
