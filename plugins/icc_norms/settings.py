"""Settings of the norm measures: one frozen model, shared by all five (each holds its own copy)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NormSettings(BaseModel):
    """Whether BatchNorm is folded before the weights are read (Jiang et al. 2020 fold it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fold_batchnorm: bool = Field(
        True,
        description=(
            "fold each BatchNorm into the convolution or linear layer before it (Jiang et al.'s conversion); "
            "False reads the raw kernels, BatchNorm kept as its affine map for the path norm"
        ),
    )
