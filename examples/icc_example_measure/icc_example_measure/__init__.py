"""An example icc-bench plugin: the log product of the weights' Frobenius norms.

``weight_norm`` is the "log.prod.fro" complexity measure of Jiang et al. (2020), "Fantastic
generalization measures and where to find them", ICLR 2020, Appendix C.3:

    weight_norm = sum over weight kernels W of log ||W||_F^2

It reads only the model's parameters, so it applies to every dataset. Like every complexity
measure, a higher value predicts worse generalization.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from icc_bench import Measure, MeasureContext, NotApplicable, hookimpl

__version__ = "0.1.0"


class WeightNormSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    parameters: Literal["kernels", "all"] = Field(
        "kernels",
        description="kernels: conv and linear weights only (ndim > 1, as Jiang et al.); all: biases and BatchNorm too",
    )


def weight_norm(ctx: MeasureContext, settings: WeightNormSettings) -> float:
    """Log product of the squared Frobenius norms of the weights (Jiang et al. 2020, log.prod.fro).

    Parameters
    ----------
    ctx : MeasureContext
        Only ``ctx.model`` is read.
    settings : WeightNormSettings
        Which parameters count.

    Returns
    -------
    float
        ``sum_W log ||W||_F^2``, in (-inf, inf); higher predicts worse generalization. A parameter
        tensor of zeros makes the product 0 and the value -inf, which is the exact answer.
    """
    selected = [p for p in ctx.model.parameters() if settings.parameters == "all" or p.ndim > 1]
    if not selected:
        raise NotApplicable(f"the model has no {settings.parameters} parameters to measure")
    # float64: a deep network's squared norms span many orders of magnitude.
    squared_norms = torch.stack([p.detach().double().pow(2).sum() for p in selected])
    return squared_norms.log().sum().item()


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(
        Measure(
            name="weight_norm",
            family="example",
            higher_is_better=False,
            needs_hierarchy=False,
            fn=weight_norm,
            settings=WeightNormSettings(),
        )
    )
