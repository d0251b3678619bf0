"""Settings of the intraclass-clustering measures c1-c4 (SPEC §2), with the paper's defaults.

Each model is frozen and forbids unknown fields, so a typo in a settings override is an error
naming the field. The fields other than ``probe_samples`` are the keyword-only options of the
matching kernel in :mod:`icc_intraclass.kernels`, under the same names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _probe_samples_field() -> Any:
    # A fresh FieldInfo per model: the four models share the field, not the object.
    return Field(
        default=None,
        ge=1,
        description="probe sample size per training class (stratified, seeded); None = the whole training set",
    )


class _MeasureSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class C1Settings(_MeasureSettings):
    """c1, neuron-level subclass selectivity: ``median_i mean^k_n sel(n, i)``."""

    k: int = Field(default=30, ge=1, description="most selective neurons averaged per subclass (paper: 30)")
    neuron_agg: Literal["topk_mean", "max"] = Field(
        default="topk_mean", description="mean of the top k neurons (paper), or the single best neuron"
    )
    subclass_agg: Literal["median", "mean"] = Field(
        default="median", description="aggregate over subclasses (paper: median, slightly better than mean)"
    )
    probe_samples: int | None = _probe_samples_field()


class C2Settings(_MeasureSettings):
    """c2, layer-level silhouette: ``median_i mean^k_l sil(l, i)``."""

    k: int = Field(
        default=5, ge=1, description="best layers averaged per subclass (paper: 5 for Wide ResNets, 1 for VGG)"
    )
    subclass_agg: Literal["median", "mean"] = Field(
        default="median", description="aggregate over subclasses (paper: median)"
    )
    probe_samples: int | None = _probe_samples_field()


class C3Settings(_MeasureSettings):
    """c3, neuron-level variance ratio: ``mean_i mean^k_n sigma_{n,C_i} / sigma_{n,D}``."""

    k: int = Field(default=30, ge=1, description="highest-ratio neurons averaged per class (paper: 30)")
    neuron_agg: Literal["topk_mean", "max"] = Field(
        default="topk_mean", description="mean of the top k neurons (paper), or the single best neuron"
    )
    class_agg: Literal["mean", "median"] = Field(default="mean", description="aggregate over classes (paper: mean)")
    probe_samples: int | None = _probe_samples_field()


class C4Settings(_MeasureSettings):
    """c4, layer-level spread of cosine distances: ``mean_i mean^k_l Sigma_{l,C_i} / Sigma_{l,D}``."""

    k: int = Field(
        default=5, ge=1, description="highest-ratio layers averaged per class (paper: 5 for Wide ResNets, 1 for VGG)"
    )
    class_agg: Literal["mean", "median"] = Field(default="mean", description="aggregate over classes (paper: mean)")
    pairs: Literal["unordered", "full_matrix"] = Field(
        default="unordered",
        description="pairs i < j (SPEC), or the full n x n distance matrix with its zero diagonal (seed code)",
    )
    probe_samples: int | None = _probe_samples_field()
