"""Disagreement between independently trained runs (Jiang, Nagarajan, Baek & Kolter, ICLR 2022).

``disagreement`` (higher = predicts worse): the fraction of unlabeled held-out inputs on which
the model and another seed of its configuration predict different classes, averaged over every
such sibling in the zoo (:meth:`icc_bench.MeasureContext.siblings`). Jiang et al. show that for
SGD-trained networks this rate is close to the test error itself (when the ensemble is
well calibrated), so it predicts generalization directly, without a label.

Readings taken:

- Inputs (setting ``split``): the dataset's held-out split (``x_heldout``) where it has one;
  otherwise, with the default ``"heldout_or_test"``, the test inputs, *without* their labels.
  Either way the measure reads inputs the training-set measures never see, so it is registered
  with ``reads_heldout=True`` and the leaderboard marks it. ``"heldout"`` makes a dataset without
  a held-out split not applicable instead.
- Several siblings: the mean of the pairwise rates with each (Jiang et al. take one pair; the
  mean over pairs has the same expectation and less variance). All seeds of a configuration
  therefore get close, not identical, values; with two seeds, the same value.
- A model without a sibling (a configuration trained with one seed) is not applicable.
- Predictions are argmax of the logits in eval mode; ties go to the lower class index (torch).

References
----------
Jiang, Nagarajan, Baek, Kolter, "Assessing generalization of SGD via disagreement", ICLR 2022.
Nakkiran & Bansal, "Distributional generalization: a new kind of generalization", 2020.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from icc_bench import Measure, MeasureContext, NotApplicable, hookimpl

__version__ = "0.1.0"

FAMILY = "disagreement"

#: Inputs per forward pass: memory only, the value does not depend on it.
BATCH_SIZE = 1000


def predictions(model: nn.Module, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """(n,) argmax class of each input, the model in its current (eval) mode."""
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in x.split(batch_size)])


def disagreement_rate(predicted: Tensor, others: list[Tensor]) -> float:
    """Mean over ``others`` of the fraction of positions where ``predicted`` differs from them.

    Parameters
    ----------
    predicted : Tensor
        (n,) classes, n >= 1.
    others : list of Tensor
        At least one (n,) tensor of classes.

    Returns
    -------
    float
        In [0, 1]; 0 when every other agrees everywhere.
    """
    if not others:
        raise ValueError("disagreement needs at least one other model's predictions")
    if predicted.numel() == 0:
        raise ValueError("disagreement needs at least one input")
    if any(o.shape != predicted.shape for o in others):
        raise ValueError(f"predictions of different lengths: {[tuple(o.shape) for o in others]} vs {tuple(predicted.shape)}")
    return sum(float((predicted != o).double().mean()) for o in others) / len(others)


class DisagreementSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    split: Literal["heldout_or_test", "heldout"] = Field(
        "heldout_or_test",
        description="the held-out inputs, falling back to the test inputs (never their labels); or held-out only",
    )
    max_siblings: int | None = Field(None, ge=1, description="compare with the first k siblings by model id; None = all")


def _inputs(ctx: MeasureContext, split: str) -> Tensor:
    if ctx.dataset.x_heldout is not None:
        return ctx.dataset.x_heldout
    if split == "heldout":
        raise NotApplicable(f"dataset {ctx.dataset.name!r} has no held-out split (setting split='heldout')")
    return ctx.dataset.x_test


def disagreement(ctx: MeasureContext, settings: DisagreementSettings) -> float:
    """Fraction of held-out inputs on which the model and another seed of its configuration disagree (Jiang et al. 2022)."""
    siblings = list(ctx.siblings().values())  # NotApplicable when there is none
    if settings.max_siblings is not None:
        siblings = siblings[: settings.max_siblings]
    x = _inputs(ctx, settings.split)
    mine = predictions(ctx.model, x, batch_size=BATCH_SIZE)
    return disagreement_rate(mine, [predictions(s, x, batch_size=BATCH_SIZE) for s in siblings])


@hookimpl
def icc_bench_register_measures(registry) -> None:
    registry.add(
        Measure(name="disagreement", family=FAMILY, higher_is_better=False, needs_hierarchy=False, reads_heldout=True,
                fn=disagreement, settings=DisagreementSettings())
    )
