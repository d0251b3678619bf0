"""``synthetic_hierarchy``: a seeded, procedurally drawn image dataset with superclasses and subclasses.

Made for laptop-scale runs of the intraclass-clustering measures: CIFAR-like RGB images of any size,
a two-level label hierarchy whose subclasses are genuine visual clusters, and no download.

How an image is made (all sizes and strengths are options; coordinates span [-1, 1] across the
image, and every draw comes from a torch generator seeded by ``seed``):

1. **Superclass = a glyph.** Superclass ``s`` is a random glyph of ``strokes`` line segments with
   end points uniform in [-0.6, 0.6]^2. Only the glyph's shape tells the superclasses apart.
2. **Subclass = a variant of the glyph.** Subclass ``k`` of ``s`` moves every glyph end point by a
   fixed offset (normal, std ``variant_shift``), adds one *accessory* segment of its own (a short
   stroke at a fixed place) and has its own colours: glyph hue ``h_0 + k / subclasses`` and
   accessory hue that plus 1/3 (``h_0`` drawn once). Subclass ``k`` of *every* superclass shares
   these hues, so colour helps tell subclasses apart within a superclass but says nothing about
   the superclass, which only the glyph's shape gives away.
3. **Per-image variation.** Each end point moves by normal noise (std ``point_jitter``); half the
   drawings are mirrored left-right (a mirror image belongs to the same class, as in photographs,
   so flip augmentation preserves labels); the drawing is then scaled by U(0.8, 1.2), rotated by
   U(-0.35, 0.35) rad and shifted by U(-``max_shift``, ``max_shift``) along each axis; the stroke
   half-width is U(0.6, 1.4) pixels; the hue moves by normal noise (std ``hue_jitter``) and the
   stroke colours are dimmed by a factor U(0.7, 1).
4. **Background and clutter.** A dark random background colour per image (each channel
   U(0, 0.35)), plus ``clutter`` segments at random places in random colours, blended at opacity
   U(0.3, 0.7), drawn first so the glyph covers them.
5. **Photometric jitter and noise.** Contrast x U(0.7, 1.3) about the image mean, brightness
   + U(-0.1, 0.1), Gaussian pixel noise (std ``noise``), clipped to [0, 1].

Segments are rendered with an anti-aliased distance-to-segment mask, vectorized over images,
segments and pixels (a loop only over chunks of images). Train, test and held-out images come from
separate random streams derived from ``seed`` (streams 1, 2 and 3), so they are independent draws of
the same generator, none depends on the size of another (changing ``test_per_subclass`` changes
neither the training nor the held-out images), and each is reproducible bit for bit from ``seed``;
the glyphs, variants and palettes come from stream 0 and are shared by all splits.
Labels: subclass ``f = s * subclasses + k``, superclass ``s = fine_to_coarse[f] = f // subclasses``;
the network is trained on ``s``. Images are stored in a seeded random order.

Split sizes. The test set defaults to 834 images per subclass (10,008 at the default 4 x 3): one
model's test accuracy then has a binomial standard deviation sqrt(p (1 - p) / n) of at most 0.005,
small against the differences between models that a population has to rank (SPEC §4's regime asks
for an inter-quartile range of test accuracy of at least 5 such standard deviations); drawing is
cheap. ``heldout_per_subclass`` (0 = no held-out split, the default) draws a third, independent
split for the ``oracle_heldout`` reference row; the embedded population specs set it to 834 as well.
``load_dataset``'s ``train_per_class`` / ``test_per_class`` never touch the held-out split.

The image defaults (4 superclasses x 3 subclasses, 50 training images per subclass, 16 x 16) were
tuned, with 100 test images per subclass, so that a small CNN neither fails nor saturates. Measured with two conv layers (width 8 or 16,
BatchNorm, max pooling), SGD with momentum 0.9 and a cosine schedule, on the 600 training images
(chance: 0.25 for superclasses, 0.08 for subclasses):

- 15 epochs over learning rate {0.01, 0.05} x augmentation x dropout {0, 0.3} x width {8, 16}:
  superclass test accuracy 0.64-0.88 for width 16 and 0.39-0.77 for width 8 (the lowest are
  width-8 networks with dropout, which underfit); augmentation helps (0.84 -> 0.88);
- 40 epochs, width 16, learning rate 0.05 (seeds 0 and 1): 0.87 / 0.86 plain, 0.92 / 0.91 with
  augmentation, 0.83 / 0.83 with dropout 0.3;
- trained on the 12 subclass labels instead: 0.89-0.92 subclass test accuracy;
- with 13 training images per subclass (156 images), 15 epochs: 0.31-0.68;
- nearest subclass mean on the normalized pixels, within each superclass: 0.86-0.91 (chance 0.33) over seeds
  0-3, so the subclasses are clusters, not perfectly separated ones.

Drawing the 600 training and 10,008 test images of the defaults takes about 1-2 s on one CPU core.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from icc_bench.data.dataset import DatasetOptions, ImageDataset, register_dataset

# Rendering works on (images, segments, pixels) temporaries; this many elements per pass (~64 MB each).
_RENDER_BUDGET = 2**24


class SyntheticHierarchyOptions(DatasetOptions):
    """Options of ``synthetic_hierarchy``; see the module docstring for what each one changes."""

    superclasses: int = Field(4, ge=2, description="number of superclasses (glyphs)")
    subclasses: int = Field(3, ge=2, description="subclasses (glyph variants) per superclass")
    train_per_subclass: int = Field(50, ge=1)
    test_per_subclass: int = Field(834, ge=1, description="test images per subclass (834 x 12 = 10,008 at the defaults)")
    heldout_per_subclass: int = Field(
        0, ge=0, description="images per subclass of an independent held-out split (oracle_heldout); 0 = none"
    )
    resolution: int = Field(16, ge=8, le=256, description="images are resolution x resolution, 3 channels")
    seed: int = Field(0, ge=0, description="seeds the glyphs, variants, palettes and every image")
    strokes: int = Field(3, ge=1, le=16, description="line segments per superclass glyph")
    variant_shift: float = Field(0.25, ge=0, description="std of the fixed per-subclass end-point offsets")
    point_jitter: float = Field(0.07, ge=0, description="std of the per-image end-point noise")
    max_shift: float = Field(0.25, ge=0, le=1, description="largest per-image translation, in half-image units")
    clutter: int = Field(1, ge=0, le=16, description="random distractor segments per image")
    hue_jitter: float = Field(0.06, ge=0, description="std of the per-image hue noise, in turns of the colour wheel")
    noise: float = Field(0.1, ge=0, description="std of the Gaussian pixel noise (pixels lie in [0, 1])")


def _stream(seed: int, stream: int) -> torch.Generator:
    """An independent generator for one purpose (0: classes, 1: train, 2: test, 3: held-out) of one seed."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _uniform(shape: tuple[int, ...], low: float, high: float, g: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _hue_to_rgb(hue: Tensor) -> Tensor:
    """Fully saturated, full-value RGB of hues in turns, (...,) -> (..., 3)."""
    # The standard HSV -> RGB formula at S = V = 1, written with a clamp instead of six cases.
    offsets = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0])
    return (6.0 * ((hue.unsqueeze(-1) + offsets) % 1.0) - 3.0).abs().sub(1.0).clamp(0.0, 1.0)


def _segment_masks(segments: Tensor, half_width: Tensor, resolution: int) -> Tensor:
    """Anti-aliased coverage of line segments, (N, M, 2, 2), (N, M) -> (N, M, resolution**2) in [0, 1].

    ``segments[n, m]`` holds the (x, y) end points of segment ``m`` of image ``n``.

    Coverage is ``clamp((half_width - d) / pixel + 0.5, 0, 1)`` with ``d`` the distance from the
    pixel centre to the segment, i.e. a one-pixel linear ramp across the stroke edge.
    """
    pixel = 2.0 / resolution
    axis = torch.linspace(-1.0 + pixel / 2, 1.0 - pixel / 2, resolution)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    xs, ys = xs.flatten(), ys.flatten()  # (P,) pixel centres
    # x and y kept apart: (N, M, P) arithmetic is several times faster than on a trailing dim of 2.
    start_x, start_y = segments[..., 0, 0, None], segments[..., 0, 1, None]  # (N, M, 1)
    dir_x, dir_y = segments[..., 1, 0, None] - start_x, segments[..., 1, 1, None] - start_y
    rel_x, rel_y = xs - start_x, ys - start_y  # (N, M, P)
    # Projection parameter of each pixel on each segment, clamped to the segment (eps: zero-length).
    t = ((rel_x * dir_x + rel_y * dir_y) / (dir_x.square() + dir_y.square()).clamp_min(1e-12)).clamp(0.0, 1.0)
    distance = torch.hypot(rel_x - t * dir_x, rel_y - t * dir_y)  # (N, M, P)
    return ((half_width.unsqueeze(-1) - distance) / pixel + 0.5).clamp(0.0, 1.0)


def _class_parameters(opts: SyntheticHierarchyOptions) -> dict[str, Tensor]:
    """The glyph of every superclass and the variant, accessory and palette of every subclass."""
    g = _stream(opts.seed, 0)
    n_super, n_sub, n_fine = opts.superclasses, opts.subclasses, opts.superclasses * opts.subclasses
    glyphs = _uniform((n_super, opts.strokes, 2, 2), -0.6, 0.6, g)  # (S, strokes, end, xy)
    offsets = opts.variant_shift * torch.randn((n_fine, opts.strokes, 2, 2), generator=g)
    # A short accessory stroke per subclass: centre in the inner square, random direction.
    centre = _uniform((n_fine, 2), -0.5, 0.5, g)
    angle = _uniform((n_fine,), 0.0, math.pi, g)
    half_length = _uniform((n_fine,), 0.12, 0.22, g)
    along = torch.stack([angle.cos(), angle.sin()], dim=-1) * half_length.unsqueeze(-1)
    accessory = torch.stack([centre - along, centre + along], dim=1)  # (F, end, xy)
    # Subclass k of *every* superclass gets the same hue: colour can tell subclasses apart within a
    # superclass but says nothing about the superclass, which only the glyph's shape gives away.
    start_hue = torch.rand((), generator=g)
    hue = (start_hue + torch.arange(n_fine).remainder(n_sub) / n_sub) % 1.0
    fine_strokes = glyphs.repeat_interleave(n_sub, dim=0) + offsets  # (F, strokes, 2, 2)
    return {"strokes": fine_strokes, "accessory": accessory, "hue": hue}


def _render(fine: Tensor, classes: dict[str, Tensor], opts: SyntheticHierarchyOptions, g: torch.Generator) -> Tensor:
    """Images of the subclasses ``fine`` (N,) -> (N, 3, R, R) float32 in [0, 1]."""
    n, res = fine.numel(), opts.resolution
    pixel = 2.0 / res
    # Glyph strokes then the accessory: (N, strokes + 1, 2, 2), with per-image end-point noise.
    shape = torch.cat([classes["strokes"][fine], classes["accessory"][fine].unsqueeze(1)], dim=1)
    shape = shape + opts.point_jitter * torch.randn(shape.shape, generator=g)
    # Mirror half the drawings left-right: as in photographs, a mirror image belongs to the same
    # class, so the paper's flip augmentation preserves labels here too.
    mirror = torch.where(torch.rand((n, 1, 1), generator=g) < 0.5, -1.0, 1.0)
    shape = torch.stack([shape[..., 0] * mirror, shape[..., 1]], dim=-1)
    # Then one similarity transform per image: scale, rotation, translation.
    scale = _uniform((n, 1, 1), 0.8, 1.2, g)
    angle = _uniform((n,), -0.35, 0.35, g)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    shift = _uniform((n, 1, 1, 2), -opts.max_shift, opts.max_shift, g)
    shape = scale.unsqueeze(-1) * torch.einsum("nij,nmej->nmei", rotation, shape) + shift
    half_width = pixel * _uniform((n, 1), 0.6, 1.4, g)  # (N, 1): stroke thickness jitter
    hue = classes["hue"][fine] + opts.hue_jitter * torch.randn((n,), generator=g)
    brightness = _uniform((n, 1), 0.7, 1.0, g)
    glyph_colour = _hue_to_rgb(hue) * brightness  # (N, 3)
    accessory_colour = _hue_to_rgb(hue + 1.0 / 3.0) * brightness
    background = _uniform((n, 3), 0.0, 0.35, g)
    clutter = _uniform((n, opts.clutter, 2, 2), -1.0, 1.0, g)
    clutter_colour = torch.rand((n, opts.clutter, 3), generator=g)
    clutter_opacity = _uniform((n, opts.clutter), 0.3, 0.7, g)
    contrast = _uniform((n, 1, 1), 0.7, 1.3, g)
    offset = _uniform((n, 1, 1), -0.1, 0.1, g)
    pixel_noise = opts.noise * torch.randn((n, 3, res * res), generator=g)

    images = torch.empty((n, 3, res * res))
    chunk = max(1, _RENDER_BUDGET // ((shape.shape[1] + opts.clutter) * res * res))
    for lo in range(0, n, chunk):
        part = slice(lo, lo + chunk)
        canvas = background[part].unsqueeze(-1).expand(-1, -1, res * res).clone()  # (n', 3, P)
        clutter_cover = _segment_masks(clutter[part], half_width[part].expand(-1, opts.clutter), res)
        for c in range(opts.clutter):  # painter's order: later clutter covers earlier
            alpha = (clutter_opacity[part, c, None] * clutter_cover[:, c]).unsqueeze(1)  # (n', 1, P)
            canvas = canvas * (1 - alpha) + clutter_colour[part, c].unsqueeze(-1) * alpha
        cover = _segment_masks(shape[part], half_width[part].expand(-1, shape.shape[1]), res)
        glyph_alpha = cover[:, :-1].amax(dim=1).unsqueeze(1)  # union of the glyph strokes, (n', 1, P)
        canvas = canvas * (1 - glyph_alpha) + glyph_colour[part].unsqueeze(-1) * glyph_alpha
        accessory_alpha = cover[:, -1:]
        canvas = canvas * (1 - accessory_alpha) + accessory_colour[part].unsqueeze(-1) * accessory_alpha
        images[part] = canvas
    mean = images.mean(dim=(1, 2), keepdim=True)
    images = (images - mean) * contrast + mean + offset + pixel_noise
    return images.clamp(0.0, 1.0).view(n, 3, res, res)


def _split(opts: SyntheticHierarchyOptions, classes: dict[str, Tensor], per_subclass: int, stream: int) -> tuple[Tensor, Tensor]:
    g = _stream(opts.seed, stream)
    n_fine = opts.superclasses * opts.subclasses
    fine = torch.arange(n_fine).repeat_interleave(per_subclass)
    fine = fine[torch.randperm(fine.numel(), generator=g)]
    return _render(fine, classes, opts, g), fine


def build_synthetic_hierarchy(options: SyntheticHierarchyOptions, data_dir: Path | None) -> ImageDataset:
    """Draw the dataset of the module docstring (``data_dir`` is unused: nothing is read)."""
    classes = _class_parameters(options)
    x_train, fine_train = _split(options, classes, options.train_per_subclass, stream=1)
    x_test, fine_test = _split(options, classes, options.test_per_subclass, stream=2)
    fine_to_coarse = torch.arange(options.superclasses * options.subclasses) // options.subclasses
    heldout = {}
    if options.heldout_per_subclass:
        x_heldout, fine_heldout = _split(options, classes, options.heldout_per_subclass, stream=3)
        heldout = {"x_heldout": x_heldout, "y_heldout": fine_to_coarse[fine_heldout]}
    return ImageDataset(
        name="synthetic_hierarchy",
        x_train=x_train,
        y_train=fine_to_coarse[fine_train],
        x_test=x_test,
        y_test=fine_to_coarse[fine_test],
        num_classes=options.superclasses,
        fine_train=fine_train,
        fine_test=fine_test,
        fine_to_coarse=fine_to_coarse,
        class_names=[f"glyph_{s}" for s in range(options.superclasses)],
        **heldout,
    )


register_dataset(
    "synthetic_hierarchy",
    SyntheticHierarchyOptions,
    build_synthetic_hierarchy,
    "seeded procedural glyphs: superclass = glyph shape, subclass = variant + accessory + palette (no download)",
)
