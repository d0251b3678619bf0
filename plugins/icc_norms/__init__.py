"""Norm-based complexity measures of Jiang et al. (2020), with their BatchNorm conversion.

Five complexity measures (higher = more complex = predicts worse generalization), each read from
the network after Jiang et al.'s BatchNorm conversion (:mod:`icc_norms.batchnorm`: every
BatchNorm folded into the convolution before it, ``W <- (gamma / sqrt(var + eps)) . W``):

- ``dist_from_init``: ``sum_i ||W_i - W_i^0||_F^2`` (eq. 40), the squared Frobenius distance from
  the weights at initialization. Needs the model's epoch-0 snapshot (``record["snapshots"]["0"]``,
  read through :meth:`icc_bench.MeasureContext.snapshot_state`); a model without one is not
  applicable. The initial network is converted the same way (its BatchNorms, at their initial
  running statistics, fold to a scale of ``1 / sqrt(1 + eps)``).
- ``path_norm``: ``sum_k f_{w^2}(1)[k]`` (eq. 44), every parameter squared, all-ones input.
- ``log_prod_of_spec``: ``sum_i log ||W_i||_2^2`` (eq. 32).
- ``log_sum_of_fro``: ``log d + (1/d) sum_i log ||W_i||_F^2`` (eq. 39), Jiang et al.'s "sum of
  Frobenius norms" (the sum after balancing the layers' scales).
- ``param_norm``: ``sum_i ||W_i||_F^2`` (eq. 42), the plain sum of squared Frobenius norms.

The layers ``W_1 ... W_d`` are every convolution and linear layer (the classifier included),
convolutions read as out x (in * kh * kw) matrices; biases and BatchNorms that cannot be folded
are not layers (see :mod:`icc_norms.batchnorm` for those and for every other reading). The values
are Jiang et al.'s before their final division by the training-set size (monotone within a
population: see :mod:`icc_norms.kernels`).

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020, Appendix C (equations 32, 39, 40, 42, 44).
Neyshabur, Tomioka, Srebro, "Norm-based capacity control in neural networks", COLT 2015 (path norm).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from icc_bench import Measure, MeasureContext, hookimpl
from icc_norms.batchnorm import convert_batchnorm, weight_layers
from icc_norms.kernels import frobenius_distance, log_prod_of_spec, log_sum_of_fro, param_norm, path_norm
from icc_norms.settings import NormSettings

__version__ = "0.1.0"

FAMILY = "norm"

#: Random inputs (seeded) on which the BatchNorm-free copy must compute the model's function.
CHECK_SAMPLES = 4


def _converted(ctx: MeasureContext, model: nn.Module, settings: NormSettings) -> nn.Module:
    """``model`` without BatchNorm, float64, checked on seeded random inputs against the model."""
    shape = (CHECK_SAMPLES, *ctx.dataset.input_shape)
    x = torch.randn(shape, generator=ctx.generator()).to(ctx.device)
    return convert_batchnorm(model, x, fold=settings.fold_batchnorm)


def _matrices(ctx: MeasureContext, settings: NormSettings) -> list[torch.Tensor]:
    return [w for _, w in weight_layers(_converted(ctx, ctx.model, settings))]


def distance_from_init(ctx: MeasureContext, settings: NormSettings) -> float:
    """Squared Frobenius distance of the weights from their epoch-0 values (Jiang et al. 2020, eq. 40)."""
    initial = copy.deepcopy(ctx.model)
    initial.load_state_dict(ctx.snapshot_state(0))  # NotApplicable without an epoch-0 snapshot
    initial.eval()
    trained = weight_layers(_converted(ctx, ctx.model, settings))
    start = weight_layers(_converted(ctx, initial, settings))
    return frobenius_distance([w for _, w in trained], [w for _, w in start])


def path_norm_measure(ctx: MeasureContext, settings: NormSettings) -> float:
    """Squared path norm: the all-ones input through the network with every parameter squared (Jiang et al. 2020, eq. 44)."""
    return path_norm(_converted(ctx, ctx.model, settings), ctx.dataset.input_shape)


def log_prod_of_spec_measure(ctx: MeasureContext, settings: NormSettings) -> float:
    """Sum over layers of log ||W||_2^2, BatchNorm folded (Jiang et al. 2020, eq. 32)."""
    return log_prod_of_spec(_matrices(ctx, settings))


def log_sum_of_fro_measure(ctx: MeasureContext, settings: NormSettings) -> float:
    """log d + mean over layers of log ||W||_F^2, BatchNorm folded (Jiang et al. 2020, eq. 39)."""
    return log_sum_of_fro(_matrices(ctx, settings))


def param_norm_measure(ctx: MeasureContext, settings: NormSettings) -> float:
    """Sum over layers of ||W||_F^2, BatchNorm folded (Jiang et al. 2020, eq. 42)."""
    return param_norm(_matrices(ctx, settings))


@hookimpl
def icc_bench_register_measures(registry) -> None:
    for name, fn in (
        ("dist_from_init", distance_from_init),
        ("path_norm", path_norm_measure),
        ("log_prod_of_spec", log_prod_of_spec_measure),
        ("log_sum_of_fro", log_sum_of_fro_measure),
        ("param_norm", param_norm_measure),
    ):
        registry.add(
            Measure(name=name, family=FAMILY, higher_is_better=False, needs_hierarchy=False, fn=fn, settings=NormSettings())
        )
