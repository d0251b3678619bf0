"""Settings of the PGDL winners' measures, with the defaults of the winners' code.

Each model is frozen and forbids unknown fields, so a typo in a settings override is an error
naming the field. Where a default comes from a particular commit of a team's repository, its
description says which; the package docstring (:mod:`icc_pgdl`) gives the full readings. The seed
is not a setting: every random draw comes from ``ctx.generator()``, seeded by ``ctx.seed`` as the
measure rules require (``icc_bench`` package docstring, section 4).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: ``"mean_all"``: the winners' competition code, R_kj averaged over all K clusters j (R_kk = 0);
#: ``"max"``: the textbook Davies-Bouldin index, the largest R_kj over j != k.
PairReduction = Literal["mean_all", "max"]
#: ``"error"``: 1 - accuracy on the mixed images (the winners' code); ``"cross_entropy"``: their
#: unused ``version_loss='log'`` branch, the mean cross-entropy against the class.
MixupLoss = Literal["error", "cross_entropy"]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DaviesBouldinSettings(_Settings):
    """pgdl_dbi: Davies-Bouldin index of the first convolution's (augmented) output, per class."""

    windows: int = Field(
        default=50, ge=1,
        description="windows averaged (competition code, commit 8e1134e: computeOver 2500 // batchSize 50 = 50)",
    )
    window_size: int = Field(
        default=150, ge=2,
        description="training samples per window (three batches of 50, concatenated); a stream of seeded "
        "permutations of the training set, repeated as often as windows x window_size needs",
    )
    pool: int = Field(
        default=4, ge=1,
        description="max pooling window and stride over H, W before flattening (their 4x4 'valid' pooling); "
        "clipped to the feature map's side",
    )
    augment: bool = Field(
        default=True,
        description="random flip, contrast in [0.7, 1.0) and a 50% zoom-crop before the network (commit 8e1134e); "
        "their later code (d9145f2, b8ed0ea) comments the augmentation out",
    )
    pair_reduction: PairReduction = Field(
        default="mean_all",
        description="'mean_all': mean of R_kj over all K clusters, R_kk = 0 (competition code, 8e1134e); "
        "'max': the textbook max over j != k (their later code, d9145f2 and b8ed0ea, and scikit-learn)",
    )
    batch_size: int = Field(default=500, ge=1, description="images per forward pass (a memory knob; values do not depend on it)")


class LabelwiseMixupSettings(_Settings):
    """pgdl_mixup: loss on images mixed at lambda = 0.5 within each class, against that class."""

    group_size: int = Field(
        default=10, ge=2,
        description="images per class in one group, all of whose pairs are mixed (their batch of 10 x classes "
        "holds about 10 of each class)",
    )
    groups: int = Field(default=10, ge=1, description="groups per class (their 10 batches)")
    mixup_loss: MixupLoss = Field(
        default="error",
        description="'error': 1 - accuracy on the mixed images, the factor of their published product; "
        "'cross_entropy': mean cross-entropy against the class (their unused 'log' branch)",
    )
    batch_size: int = Field(default=500, ge=1, description="images per forward pass (a memory knob; values do not depend on it)")


class DaviesBouldinMixupSettings(LabelwiseMixupSettings, DaviesBouldinSettings):
    """pgdl_dbi_mixup: the product of the two, with the settings of both (the index's listed first)."""


class AugmentRobustnessSettings(_Settings):
    """pgdl_augment_robustness: mean penalty over seven augmentations of each training image."""

    samples: int | None = Field(
        default=12864, ge=1,
        description="training images scored (their 201 batches of 64 = 12864); None = all. A seeded subset "
        "when the training set is larger",
    )
    batch_size: int = Field(
        default=500, ge=1, description="images per forward pass (theirs: 64; a memory knob, values do not depend on it)"
    )


class LabelVariationSettings(_Settings):
    """pgdl_label_variation: rate of change of the label variation over the last layers' k-NN graphs."""

    k: int = Field(default=20, ge=1, description="neighbours per sample in the cosine-similarity graph (theirs: 20)")
    batch_size: int = Field(
        default=500, ge=3,
        description="samples per graph (theirs: 500, incomplete last batch dropped); a training set smaller than "
        "this gives one graph of all of it",
    )
    batches: int = Field(default=11, ge=1, description="graphs at most; the median is taken over them (theirs: 11)")
    last_layers: int = Field(
        default=2, ge=1,
        description="weight layers (convolutions, linear) whose inputs are taken, counted from the output; the "
        "output logits are always added (theirs: the inputs of model.layers[-2:], and the output)",
    )
