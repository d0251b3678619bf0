"""The top three solutions of the NeurIPS 2020 competition "Predicting Generalization in Deep Learning".

Five complexity measures, all computed on the training set (as the competition gave it to the
entrants) and all declared higher = worse generalization, the direction each team's paper argues:

- ``pgdl_dbi_mixup`` (1st place, Natekar & Sharma): ``pgdl_dbi`` x ``pgdl_mixup``;
- ``pgdl_dbi``: Davies-Bouldin index of the first convolution's output on augmented training
  images, the classes as clusters (:mod:`icc_pgdl.davies_bouldin`); higher = classes less
  separable already at the first layer;
- ``pgdl_mixup``: label-wise mixup, the error (or cross-entropy) on images mixed at lambda = 0.5
  within each class (:mod:`icc_pgdl.mixup`); higher = the class regions are less convex;
- ``pgdl_augment_robustness`` (2nd place, Aithal, Kashyap & Subramanyam): mean penalty of the
  prediction's change under seven augmentations (:mod:`icc_pgdl.robustness`, which lists them);
  higher = less robust;
- ``pgdl_label_variation`` (3rd place, Lassance et al., their "VR" score): rate of change of the
  label variation over k-NN cosine graphs of the last layers (:mod:`icc_pgdl.label_variation`);
  higher = classes more entangled in the last latent spaces.

Every measure reads the training images in a seeded order that depends on their contents only
(:mod:`icc_pgdl.sampling`), so no value depends on the order of the training samples, and draws
every random number from ``ctx.generator()``. The model is read in eval mode without gradients and
left untouched. This package registers itself through the ``icc_bench`` entry-point group, exactly
as a third-party plugin would.

The competition's scores ignore the sign of a measure (the official conditional mutual information,
and the absolute Pearson correlation of the third team's local scorer), so the signs the teams'
functions return (the second team returns minus its penalty sum) say nothing about direction; the
directions above are the papers' arguments.

Sources and readings
====================
The full texts of the three papers could not be read from where this was written (only their
abstracts and a summary); every reading below rests on the teams' public code, cited by commit.
Where two commits of one repository differ, both are named.

First place: github.com/parthnatekar/pgdl
-----------------------------------------
Three commits matter. 8e1134e ("Final Solutions", 2020-10-29, three days before the competition
closed), ``complexitymeasures.py``: ``complexityDB`` and ``complexityMixup``; ``augment.py``:
``DataAugmentor``. d9145f2 (2020-12-03, the paper's week), ``complexity.py``: the measure
``'DBI, Mixup'`` = ``complexityDB(...) * (1 - complexityMixup(...))``, its ``complexityDB`` reading
the third- to fifth-last layers through a 25-component PCA. b8ed0ea (2021-04-19, the head),
``complexity.py``: the same product, with ``complexityDB`` back on the first layer
(``layer='initial'``, no PCA). The final-phase submission cannot be identified in the history
(8e1134e's ``complexity()`` returns a margin measure).

1. Cluster reduction. 8e1134e averages ``R_kj`` over all K clusters with ``R_kk = 0``
   (``np.nanmean`` of each row, the diagonal set to 0 by the infinite distance of a centroid to
   itself): ``(1/K) sum_{j != k} R_kj``. d9145f2 and b8ed0ea (and scikit-learn, and Davies &
   Bouldin 1979) take ``max_{j != k} R_kj``. Default: 8e1134e's (``pair_reduction="mean_all"``);
   ``"max"`` is the textbook index.
2. Augmentation. 8e1134e augments each image: random left-right flip, contrast factor in
   [0.7, 1.0), and with probability 1/2 a central crop resized back at a scale drawn from
   ``np.arange(0.85, 1.0, 0.01)`` (16 values, the last one 1.0 by float rounding, though its
   comment says 20 from 1% to 20%). The later commits comment the augmentation out. Default: on.
3. Windows. 8e1134e: ``computeOver=2500, batchSize=50``, so 50 windows of three batches (150
   images) from ``dataset.shuffle(5000, seed=1)``; the later commits: 400 // 40 = 10 windows of
   120 from the repeated dataset. Default: 50 x 150, drawn from repeated seeded permutations of
   the training set (7,500 images: the training set is cycled when smaller, each pass augmented
   afresh).
4. Layer. 8e1134e: the first of the model's first three Keras layers with ``filters`` or
   ``units`` in its config (the first ``Conv2D``); b8ed0ea: the first with ``strides`` (a
   convolution or a pooling). Here: the output of the first convolution a forward pass calls. A
   Keras ``Conv2D`` output includes its own activation when it declares one; ours is the raw
   convolution (icc-bench's networks keep BatchNorm and ReLU as modules of their own). Its output
   is max pooled 4 x 4 with stride 4, no padding, as theirs, and flattened.
5. Mixup groups. All three commits take batches of 10 x classes images in the dataset's order,
   unshuffled (8e1134e caps the batch at 100 and takes 1000 // batch batches; the later commits
   always 10), and within each batch mix all pairs i < j of each class's images at lambda = 0.5
   (``np.triu_indices``). Here: each class's images in seeded order, cut into groups of exactly
   10 (the expected count per class of their batch on shuffled data), 10 groups per class; the
   loss is averaged per group, then over groups, then over classes (as their means over batches
   and classes). Their per-class ``try``/``except`` drops a class outright when any batch has
   fewer than two of its images; here only a last group of one image is dropped, and a class
   with no pair at all.
6. Mixup loss. Their label-wise measure scores the accuracy (``version_loss=None``), and the
   published product multiplies the index by ``1 - accuracy``. Default: that error
   (``mixup_loss="error"``). ``"cross_entropy"`` is their ``'log'`` branch, which the label-wise
   measure never calls; it is the reading of the task that asked for this package ("the label-wise
   mixup loss ... cross-entropy against that class"), offered as a setting.
7. The product. With the defaults, ``pgdl_dbi_mixup`` multiplies 8e1134e's index (mean over
   clusters, augmented, 50 x 150) by the later commits' mixup factor: no single commit computes
   this combination. b8ed0ea's own product is ``pair_reduction="max", augment=False,
   windows=10, window_size=120``. Each factor uses a fresh ``ctx.generator()``, so the product
   equals ``pgdl_dbi * pgdl_mixup`` at the same settings.

Second place: github.com/sumukhaithal6/pgdl
-------------------------------------------
``runner_up_solution/complexity.py`` at a4ff1f6 (2020-12-07, "Clean up code"; the same
computation as the initial commit e16c60b). Paper: "Robustness to Augmentations as a
Generalization metric", arXiv:2101.06459.

8. The list, the penalties and the score per image are theirs (:mod:`icc_pgdl.robustness`); their
   per-image score is ``|p_orig - p_aug|`` with ``p`` the top softmax probability when the
   arg-max class is unchanged, else the penalty.
9. Aggregate. They sum over the first 201 batches of 64 images in the dataset's order (the loop
   breaks after batch index 200: 12,864 images) and return minus the sum. Here: the mean over
   ``min(samples, N)`` images in seeded order (the same ranking at a fixed number of images, and
   comparable across training-set sizes), without the sign flip.
10. Randomness. Their saturation factors and erasing boxes come from unseeded global generators;
    here from ``ctx.generator()``: the same value for the same seed.
11. Pixel range. Their transforms act on the images as the competition's models took them; here,
    on the images as icc-bench's models take them, standardized per channel. So ``+ 0.5``
    brightness is half a standard deviation, the Sobel response is ``dx / 4 + 0.5`` in those
    units, and erasing to 0 fills the box with the training set's channel means. Their saturation
    goes through HSV and clips the saturation at 1, a bound of pixels in [0, 1]; here the same
    hue- and value-preserving scaling ``x_c' = M - f (M - x_c)`` (M the pixel's channel maximum),
    unclipped. One-channel images: saturation is the identity (theirs changes them by the RGB
    round trip's rounding only).
12. Central crop. ``tf.image.central_crop(x, 0.9)`` drops ``int(0.05 * side)`` pixels per border,
    none at 16 x 16, where it would be the identity; here at least one. ``resize_with_pad`` then
    resizes the crop back (it pads only when the aspect ratio changes): a zoom, bilinear.

Third place: github.com/cadurosar/pgdl
--------------------------------------
``VR/complexity.py`` at d116a17 (2021-02-23). Paper: "Ranking Deep Learning Generalization using
Label Variation in Latent Geometry Graphs", arXiv:2011.12737. Their final-phase submission was a
different score, "VPM" (``VPM_1/``: the penultimate layer's input on Beta(2, 2) mixup inputs, an
RBF similarity, k = 1, the normalized Laplacian, one graph); VR (14.45 on the public set against
VPM's 6.26 in their README) is the one implemented here.

13. Representations. Theirs: the inputs of the last two Keras layers (``model.layers[-2:]``) and
    the output. Keras counts every layer (``Flatten``, ``Dropout``, activations), whose input can
    repeat the previous one's; here the inputs of the last two weight layers (convolution or
    linear) in call order, and the output logits. For icc-bench's VGG: the input of stage 4's last
    convolution and the classifier's input (the pooled features).
14. Graph and Laplacian. As their code: cosine similarity clipped to [0, 1], each row keeps values
    >= its 21st largest (itself included: 20 neighbours, ties kept), diagonal dropped, an edge
    kept by either end, weighted by the similarity; ``L = D - W`` unnormalized (the paper's summary
    lists a normalization step among those that build the graphs; the VPM code normalizes, the VR
    code does not). Computed in float64 where theirs is float32, so exact ties can fall differently.
15. Batches. Batches of 500 in the dataset's order, the incomplete last one dropped, stopping after
    batch index 10 (11 batches; their comment says 10,000 examples); label variation divided by
    ``2 * 50 * 1000``; mean absolute change over consecutive representations; median over batches.
    Here: the same on a seeded order, and one batch of all images when the training set is smaller
    than a batch.

References
----------
P. Natekar and M. Sharma, "Representation based complexity measures for predicting generalization
in deep learning", arXiv:2012.02775, 2020.
S. K. Aithal, D. Kashyap and N. Subramanyam, "Robustness to augmentations as a generalization
metric", arXiv:2101.06459, 2021.
C. Lassance, L. Bethune, M. Bontonou, M. Hamidouche and V. Gripon, "Ranking deep learning
generalization using label variation in latent geometry graphs", arXiv:2011.12737, 2020.
Y. Jiang et al., "Methods and analysis of the first competition in predicting generalization of
deep learning", PMLR 133:170-190, 2021.
"""

from __future__ import annotations

from icc_bench import Measure, MeasureContext, hookimpl
from icc_pgdl.davies_bouldin import first_layer_davies_bouldin
from icc_pgdl.label_variation import last_layers_variation_rate
from icc_pgdl.mixup import labelwise_mixup
from icc_pgdl.robustness import augment_robustness
from icc_pgdl.settings import (
    AugmentRobustnessSettings,
    DaviesBouldinMixupSettings,
    DaviesBouldinSettings,
    LabelVariationSettings,
    LabelwiseMixupSettings,
)

__version__ = "0.1.0"

FAMILY = "PGDL winners"


def _part(settings, model: type):
    """The settings of one factor of the product, taken from the product's settings."""
    return model(**settings.model_dump(include=set(model.model_fields)))


def pgdl_dbi(ctx: MeasureContext, settings: DaviesBouldinSettings) -> float:
    """Davies-Bouldin index of the first convolution's output on augmented training images, classes as clusters (higher = worse)."""
    return first_layer_davies_bouldin(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())


def pgdl_mixup(ctx: MeasureContext, settings: LabelwiseMixupSettings) -> float:
    """Label-wise mixup: error on training images mixed at 0.5 within each class (higher = worse)."""
    return labelwise_mixup(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())


def pgdl_dbi_mixup(ctx: MeasureContext, settings: DaviesBouldinMixupSettings) -> float:
    """PGDL 1st place: first-layer Davies-Bouldin index x label-wise mixup error (higher = worse)."""
    return pgdl_dbi(ctx, _part(settings, DaviesBouldinSettings)) * pgdl_mixup(ctx, _part(settings, LabelwiseMixupSettings))


def pgdl_augment_robustness(ctx: MeasureContext, settings: AugmentRobustnessSettings) -> float:
    """PGDL 2nd place: mean penalty of the prediction's change under seven augmentations (higher = worse)."""
    return augment_robustness(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())


def pgdl_label_variation(ctx: MeasureContext, settings: LabelVariationSettings) -> float:
    """PGDL 3rd place: rate of change of label variation over the last layers' k-NN cosine graphs (higher = worse)."""
    return last_layers_variation_rate(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())


@hookimpl
def icc_bench_register_measures(registry) -> None:
    for name, fn, settings in (
        ("pgdl_dbi_mixup", pgdl_dbi_mixup, DaviesBouldinMixupSettings()),
        ("pgdl_dbi", pgdl_dbi, DaviesBouldinSettings()),
        ("pgdl_mixup", pgdl_mixup, LabelwiseMixupSettings()),
        ("pgdl_augment_robustness", pgdl_augment_robustness, AugmentRobustnessSettings()),
        ("pgdl_label_variation", pgdl_label_variation, LabelVariationSettings()),
    ):
        registry.add(Measure(name=name, family=FAMILY, higher_is_better=False, needs_hierarchy=False, fn=fn, settings=settings))
