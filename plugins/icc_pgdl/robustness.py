"""Second place (Aithal, Kashyap & Subramanyam): robustness of the prediction to augmentations.

Each training image is passed through the network as it is and under seven augmentations. For
each augmentation, the image scores the change of the top softmax probability,
``|p_orig - p_aug|``, when the predicted class stays the same, and a fixed penalty when it changes.
The measure is the mean over images of the sum over augmentations: 0 for a network whose output
no augmentation changes, larger for one whose predictions the augmentations move or flip.

The seven augmentations and their penalties, in the order of their code (package docstring for
the sources and readings):

====  ======================================================================  =======
 #    augmentation                                                            penalty
====  ======================================================================  =======
 1    left-right flip                                                            6
 2    saturation x U(0.6, 1.6)                                                   1
 3    central 90% crop, resized back                                             2
 4    horizontal Sobel response / 4 + 0.5                                        3
 5    brightness + 0.5                                                           1
 6    left-right flip, then saturation x U(0.6, 1.6) (a draw of its own)        12
 7    random erasing of one box to 0                                             2
====  ======================================================================  =======
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icc_pgdl.augment import (
    adjust_brightness,
    adjust_saturation,
    central_crop_resize,
    draw_erase_boxes,
    draw_uniform,
    erase,
    flip_left_right,
    sobel_dx,
)
from icc_pgdl.forward import logits
from icc_pgdl.sampling import seeded_stream
from icc_pgdl.settings import AugmentRobustnessSettings

#: Penalty for a changed predicted class, per augmentation, in the order of the table above.
PENALTIES: tuple[float, ...] = (6.0, 1.0, 2.0, 3.0, 1.0, 12.0, 2.0)
SATURATION_RANGE = (0.6, 1.6)
BRIGHTNESS_DELTA = 0.5
CROP_FRACTION = 0.9


@dataclass(frozen=True)
class ViewParameters:
    """The random parameters of the seven views of ``n`` images (CPU tensors, one row per image)."""

    saturation: Tensor  # (n,) factor of view 2
    flip_saturation: Tensor  # (n,) factor of view 6
    erase_boxes: Tensor  # (n, 4) box of view 7: top, left, height, width

    @classmethod
    def draw(cls, n: int, height: int, width: int, generator: torch.Generator) -> ViewParameters:
        """Draw in a fixed order: view 2's factors, view 6's, then view 7's boxes."""
        return cls(
            draw_uniform(n, *SATURATION_RANGE, generator),
            draw_uniform(n, *SATURATION_RANGE, generator),
            draw_erase_boxes(n, height, width, generator),
        )

    def __getitem__(self, rows: Tensor) -> ViewParameters:
        return ViewParameters(self.saturation[rows], self.flip_saturation[rows], self.erase_boxes[rows])


def augmented_views(x: Tensor, parameters: ViewParameters) -> list[Tensor]:
    """The seven augmented copies of a (B, C, H, W) batch, in the order of :data:`PENALTIES`."""
    flipped = flip_left_right(x)
    return [
        flipped,
        adjust_saturation(x, parameters.saturation),
        central_crop_resize(x, CROP_FRACTION),
        sobel_dx(x),
        adjust_brightness(x, BRIGHTNESS_DELTA),
        adjust_saturation(flipped, parameters.flip_saturation),
        erase(x, parameters.erase_boxes),
    ]


def augmentation_penalty(original: Tensor, augmented: list[Tensor], penalties: tuple[float, ...] = PENALTIES) -> Tensor:
    """Per-image sum over augmentations of ``|p_orig - p_aug|``, or the penalty if the class changed.

    ``p`` is the largest softmax probability and the class its arg-max (first maximum on ties).

    Parameters
    ----------
    original : Tensor of shape (n, classes)
        Logits on the original images.
    augmented : list of Tensor of shape (n, classes)
        Logits on each augmented copy, one per penalty.
    penalties : tuple of float

    Returns
    -------
    Tensor of shape (n,)
        float64, >= 0.
    """
    if len(augmented) != len(penalties):
        raise ValueError(f"{len(augmented)} augmented outputs for {len(penalties)} penalties: pass one per penalty.")
    p_orig, class_orig = torch.softmax(original.to(torch.float64), dim=1).max(dim=1)
    total = torch.zeros_like(p_orig)
    for outputs, penalty in zip(augmented, penalties):
        p_aug, class_aug = torch.softmax(outputs.to(torch.float64), dim=1).max(dim=1)
        total += torch.where(class_aug == class_orig, (p_orig - p_aug).abs(), torch.full_like(p_orig, penalty))
    return total


def augment_robustness(
    model: nn.Module, x: Tensor, labels: Tensor, settings: AugmentRobustnessSettings, generator: torch.Generator
) -> float:
    """Mean over (a seeded subset of) the training images of :func:`augmentation_penalty`.

    Parameters
    ----------
    model : nn.Module
        In the mode it should be read in (eval); not modified.
    x : Tensor of shape (N, C, H, W)
        Training images.
    labels : Tensor of shape (N,)
        Their labels: they only fix the order of the samples (the measure does not read them).
    settings : AugmentRobustnessSettings
    generator : torch.Generator
        CPU generator: the subset and its order first, then the augmentation parameters of every
        image (so the batch size changes no value).
    """
    n = len(x) if settings.samples is None else min(settings.samples, len(x))
    order = seeded_stream(x, labels, n, generator)
    parameters = ViewParameters.draw(n, x.shape[-2], x.shape[-1], generator)
    total = 0.0
    for rows in torch.arange(n).split(settings.batch_size):
        images = x[order[rows].to(x.device)]
        original = logits(model, images, batch_size=settings.batch_size)
        views = augmented_views(images, parameters[rows])
        augmented = [logits(model, view, batch_size=settings.batch_size) for view in views]
        total += float(augmentation_penalty(original, augmented).sum())
    return total / n
