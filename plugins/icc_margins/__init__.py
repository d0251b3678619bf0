"""Margin measures: the output margin of Jiang et al. (2020) and normalized hidden-layer margins (Jiang et al. 2019).

- ``inverse_margin`` (complexity, higher = predicts worse): ``1 / gamma^2``, ``gamma`` the 10th
  percentile over the training samples of the output margin ``f_y(x) - max_{j != y} f_j(x)``
  (Jiang et al. 2020, Appendix C.1, eq. 22). When ``gamma <= 1e-6`` (at least 10% of the training
  samples misclassified or on the boundary) the value is the floor's ``1e12`` for every such
  model (setting ``nonpositive``; ``"abs"`` is the reference code's ``|gamma|``).
- ``layer_margin`` (higher = predicts better): at the input and at three equally spaced probe
  layers (the ReLU outputs of the ceil(L/4)-th, ceil(L/2)-th and ceil(3L/4)-th of the L
  BatchNorm-ReLU layers: stages 1-3 of the paper's VGG), the first-order distance of each
  correctly classified training sample to the decision boundary, ``m(x) / ||grad_h m(x)||``,
  divided by the square root of the layer's total variation; the measure is the mean over those
  layers of the log of the median (setting ``quantile``) of that distribution (Jiang et al.
  2019). The paper fits a regression on quartiles of these distributions across models; a
  per-model measure cannot, so one quantile per layer, averaged in log space, stands for it.

Readings are written out in :mod:`icc_margins.kernels`. Both read the whole training set by
default (setting ``probe_samples`` for a stratified subset), with the model in eval mode.

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020, Appendix C.1.
Jiang, Krishnan, Mobahi, Bengio, "Predicting the generalization gap in deep networks with margin
distributions", ICLR 2019, section 3.
Elsayed, Krishnan, Mobahi, Regan, Bengio, "Large margin deep networks for classification",
NeurIPS 2018 (the first-order distance).
"""

from __future__ import annotations

import torch

from icc_bench import Measure, MeasureContext, NotApplicable, hookimpl
from icc_margins.kernels import inverse_squared_margin, layer_margins, normalized_margin_statistic, output_margins
from icc_margins.layers import activation_modules, pick_by_depth
from icc_margins.settings import LayerMarginSettings, OutputMarginSettings

__version__ = "0.1.0"

FAMILY = "margin"

#: Samples per forward (and backward) pass: memory only, the values do not depend on it.
BATCH_SIZE = 500


def _sample(ctx: MeasureContext, probe_samples: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    probe = ctx.probe_for(probe_samples)
    return ctx.dataset.x_train[probe.indices.to(ctx.device)], probe.labels


def inverse_margin(ctx: MeasureContext, settings: OutputMarginSettings) -> float:
    """1/gamma^2, gamma the 10th percentile of the training output margins (Jiang et al. 2020, eq. 22)."""
    x, y = _sample(ctx, settings.probe_samples)
    with torch.no_grad():
        logits = torch.cat([ctx.model(chunk) for chunk in x.split(BATCH_SIZE)])  # (n, classes)
    return inverse_squared_margin(
        output_margins(logits, y), quantile=settings.quantile, nonpositive=settings.nonpositive,
        margin_floor=settings.margin_floor,
    )


def layer_margin(ctx: MeasureContext, settings: LayerMarginSettings) -> float:
    """Mean over the input and 3 hidden layers of the log median normalized margin (Jiang et al. 2019)."""
    x, y = _sample(ctx, settings.probe_samples)
    modules = activation_modules(ctx.model, x[:1])
    chosen = [modules[i] for i in pick_by_depth(len(modules), settings.depth_fractions)]
    missing = [name for name, module in chosen if module is None]
    if missing:
        raise NotApplicable(
            f"the ReLU after probe layer(s) {', '.join(missing)} is not a module called on the BatchNorm's output, "
            "so its activations cannot be differentiated against"
        )
    result = layer_margins(
        ctx.model, x, y, [(name, module) for name, module in chosen],
        include_input=settings.include_input, eps=settings.eps, batch_size=BATCH_SIZE,
    )
    try:
        return normalized_margin_statistic(result, quantile=settings.quantile)
    except ValueError as e:  # no correct sample, or a constant layer: the measure is undefined here
        raise NotApplicable(str(e)) from None


@hookimpl
def icc_bench_register_measures(registry) -> None:
    registry.add(
        Measure(name="inverse_margin", family=FAMILY, higher_is_better=False, needs_hierarchy=False,
                fn=inverse_margin, settings=OutputMarginSettings())
    )
    registry.add(
        Measure(name="layer_margin", family=FAMILY, higher_is_better=True, needs_hierarchy=False,
                fn=layer_margin, settings=LayerMarginSettings())
    )
