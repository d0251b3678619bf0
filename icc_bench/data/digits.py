"""``digits``: scikit-learn's 8 x 8 handwritten digits, upsampled, with a two-level hierarchy.

The 1,797 images of ``sklearn.datasets.load_digits`` ship with scikit-learn (nothing is
downloaded). Pixels (0-16) are scaled to [0, 1], one channel, and upsampled bilinearly to
``resolution`` x ``resolution`` (16 by default, the laptop-scale setting of SPEC §4). The train/test
split is stratified by digit and seeded (``split_seed``), ``test_fraction`` of every digit going to
the test set.

Hierarchy (``labels="coarse"``, the default): the network is trained on five superclasses of two
digits each, grouped by shared stroke structure, so that each superclass holds two visually distinct
but related clusters:

====  ==========  ==============================================================================
 id    digits      shared structure
====  ==========  ==============================================================================
 0     0, 6        a closed loop in the lower half, drawn with one round stroke
 1     1, 7        a single dominant vertical/diagonal stroke, little else
 2     2, 5        three strokes: a horizontal bar, a bowl, a horizontal bar (5 is close to a
                   vertically mirrored 2)
 3     3, 8        two stacked bowls open to the left (3) or closed (8) along a right-hand spine
 4     4, 9        a closed or nearly closed upper part on a right-hand vertical stroke
====  ==========  ==============================================================================

These are also the pairs most often confused in handwriting, which keeps every subclass a real
cluster inside its superclass rather than an arbitrary label. ``fine_to_coarse`` is
``[0, 1, 2, 3, 4, 2, 0, 1, 3, 4]`` (digit -> superclass) and ``fine_train`` / ``fine_test`` hold the
digits. With ``labels="fine"`` the network is trained on the 10 digits and the dataset is flat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from icc_bench.data.dataset import DatasetOptions, ImageDataset, register_dataset

#: The five superclasses, as (digit, digit) pairs; index = superclass id.
DIGIT_SUPERCLASSES: tuple[tuple[int, int], ...] = ((0, 6), (1, 7), (2, 5), (3, 8), (4, 9))


def digit_fine_to_coarse() -> torch.Tensor:
    """(10,) int64: the superclass of each digit under :data:`DIGIT_SUPERCLASSES`."""
    mapping = torch.empty(10, dtype=torch.int64)
    for superclass, digits in enumerate(DIGIT_SUPERCLASSES):
        mapping[list(digits)] = superclass
    return mapping


class DigitsOptions(DatasetOptions):
    """Options of ``digits``."""

    resolution: int = Field(16, ge=8, le=128, description="upsample the 8 x 8 images bilinearly to this size")
    labels: Literal["coarse", "fine"] = Field(
        "coarse", description="coarse: train on the 5 superclasses, digits kept as subclasses; fine: the 10 digits, flat"
    )
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of every digit's images put in the test set")
    split_seed: int = Field(0, ge=0, description="seed of the train/test split")


def _stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train and test indices with ``round(test_fraction * n_d)`` test images of each digit ``d``.

    Every digit keeps at least one image on each side, so neither split ever lacks a class.
    """
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for digit in range(10):
        members = torch.nonzero(labels == digit).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_test = min(max(round(test_fraction * members.numel()), 1), members.numel() - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def build_digits(options: DigitsOptions, data_dir: Path | None) -> ImageDataset:
    """The digits of the module docstring (``data_dir`` is unused: the data ships with scikit-learn)."""
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(options.resolution,) * 2, mode="bilinear", align_corners=False)
    digits = torch.as_tensor(bunch.target, dtype=torch.int64)
    train, test = _stratified_split(digits, options.test_fraction, options.split_seed)
    if options.labels == "fine":
        return ImageDataset(
            name="digits",
            x_train=images[train],
            y_train=digits[train],
            x_test=images[test],
            y_test=digits[test],
            num_classes=10,
            class_names=[str(d) for d in range(10)],
        )
    fine_to_coarse = digit_fine_to_coarse()
    return ImageDataset(
        name="digits",
        x_train=images[train],
        y_train=fine_to_coarse[digits[train]],
        x_test=images[test],
        y_test=fine_to_coarse[digits[test]],
        num_classes=len(DIGIT_SUPERCLASSES),
        fine_train=digits[train],
        fine_test=digits[test],
        fine_to_coarse=fine_to_coarse,
        class_names=[f"{a}/{b}" for a, b in DIGIT_SUPERCLASSES],
    )


register_dataset(
    "digits",
    DigitsOptions,
    build_digits,
    "scikit-learn's 8x8 digits upsampled (bundled, no download); 5 superclasses of 2 digits, or the 10 digits",
)
