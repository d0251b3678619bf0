"""The image transforms the first- and second-place solutions apply, on (B, C, H, W) batches.

Each transform is a pure function of the images and of explicit per-image parameters; the random
ones have a ``draw_*`` companion that takes the parameters from a CPU generator, so a seed gives
the same images on any device. The transforms act on the images as the model receives them
(icc-bench standardizes every channel); what the TensorFlow originals assume about the pixel range
and how we read them here is said per function and summed up in the :mod:`icc_pgdl` docstring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# -- deterministic transforms --------------------------------------------------------------------


def flip_left_right(x: Tensor) -> Tensor:
    """Mirror every image left-right (``tf.image.flip_left_right``)."""
    return x.flip(-1)


def adjust_brightness(x: Tensor, delta: float) -> Tensor:
    """Add ``delta`` to every pixel (``tf.image.adjust_brightness``, which adds without clipping)."""
    return x + delta


def sobel_dx(x: Tensor) -> Tensor:
    """``tf.image.sobel_edges(x)[..., 1] / 4 + 0.5``: the horizontal Sobel response of each channel.

    ``sobel_edges`` pads each image by reflection and correlates every channel with
    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` (index 1 of its last axis; index 0 is the vertical
    kernel). Needs H, W >= 2 for the reflection.
    """
    channels = x.shape[1]
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    dx = F.conv2d(padded, kernel.expand(channels, 1, 3, 3), groups=channels)  # correlation, as TF's
    return dx / 4 + 0.5


def central_crop_resize(x: Tensor, fraction: float) -> Tensor:
    """Keep the central ``fraction`` of each side, then resize back (bilinear, half-pixel centres).

    ``tf.image.central_crop`` drops ``int((side - side * fraction) / 2)`` pixels on each border;
    ``tf.image.resize_with_pad`` then scales the crop back to the original size (it pads only when
    the aspect ratio changes, which a central crop keeps, so nothing is padded). We drop at least
    one pixel: at 16 x 16 TensorFlow's rounding drops none and the transform would be the identity.
    """
    height, width = x.shape[-2:]
    top = max(1, int((height - height * fraction) / 2))
    left = max(1, int((width - width * fraction) / 2))
    if height - 2 * top < 1 or width - 2 * left < 1:
        raise ValueError(f"images of {height} x {width} are too small for a central crop; use images of at least 3 x 3")
    cropped = x[..., top : height - top, left : width - left]
    return F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False)


# -- random transforms: parameters, then application ----------------------------------------------


def draw_uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """(n,) float32 factors uniform in [low, high), drawn on the CPU."""
    return low + (high - low) * torch.rand(n, generator=generator)


def adjust_saturation(x: Tensor, factors: Tensor) -> Tensor:
    """Scale each pixel's HSV saturation by its image's factor, hue and value kept.

    In RGB, keeping the hue and the value ``M = max_c x_c`` while scaling the saturation
    ``(M - min_c x_c) / M`` by ``f`` is ``x'_c = M - f (M - x_c)`` per pixel, which is what
    ``tf.image.adjust_saturation`` computes through HSV. TensorFlow also clips the saturation at
    1, i.e. ``x'_c >= 0``, a bound of pixels in [0, 1] that standardized images do not have; it is
    not applied. A one-channel image is unchanged (the winners' grayscale branch, RGB round trip,
    changes it by float rounding only).
    """
    value = x.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    f = factors.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return value - f * (value - x)


def adjust_contrast(x: Tensor, factors: Tensor) -> Tensor:
    """``(x - mean) * f + mean`` per channel of each image, mean over its pixels (``tf.image.adjust_contrast``)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    f = factors.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - mean) * f + mean


def draw_erase_boxes(n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """(n, 4) int64 boxes ``(top, left, box_height, box_width)`` of the second-place random erasing.

    Their ``random_erase_np_v2`` (probability 1, sl = 0.02, sh = 0.4, r1 = 0.3): with
    ``area = H W``, side bounds ``low = round(sqrt(sl area r1))`` and ``high = round(sqrt(sh area /
    r1))`` (half to even, as NumPy), a box height uniform in ``[low, min(high, H))``, a width
    uniform in ``[low, min(high, W))``, then a corner uniform in ``[0, H - h) x [0, W - w)``. On
    images so small that ``low`` reaches the upper bound, ``low`` is lowered to one below it.
    """
    area = height * width
    low = round((0.02 * area * 0.3) ** 0.5)
    high = round((0.4 * area / 0.3) ** 0.5)
    h_high, w_high = min(high, height), min(high, width)
    if h_high < 2 or w_high < 2:
        raise ValueError(f"images of {height} x {width} are too small for random erasing; use images of at least 2 x 2")
    h = torch.randint(min(low, h_high - 1), h_high, (n,), generator=generator)
    w = torch.randint(min(low, w_high - 1), w_high, (n,), generator=generator)
    top = (torch.rand(n, generator=generator) * (height - h)).long()  # uniform integer in [0, H - h)
    left = (torch.rand(n, generator=generator) * (width - w)).long()
    return torch.stack([top, left, h, w], dim=1)


def erase(x: Tensor, boxes: Tensor) -> Tensor:
    """Set each image's box to 0 in every channel (their erasing writes zeros)."""
    boxes = boxes.to(x.device)
    rows = torch.arange(x.shape[-2], device=x.device)
    cols = torch.arange(x.shape[-1], device=x.device)
    top, left, h, w = (boxes[:, i, None] for i in range(4))
    inside_rows = (rows >= top) & (rows < top + h)  # (B, H)
    inside_cols = (cols >= left) & (cols < left + w)  # (B, W)
    inside = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]  # (B, 1, H, W)
    return x.masked_fill(inside, 0.0)


def zoom(x: Tensor, scales: Tensor) -> Tensor:
    """Crop the central ``scale`` of each image and resize it back (``tf.image.crop_and_resize``).

    ``crop_and_resize`` with the box ``[0.5 - s/2, 0.5 + s/2]`` on both axes and the original size
    samples pixel ``i`` of the output at ``(H - 1)(1 - s)/2 + i s`` in the input, bilinearly: a
    grid of ``linspace(-s, s, H)`` in ``grid_sample``'s corner-aligned coordinates. A scale of 1
    is the identity.
    """
    batch, _, height, width = x.shape
    s = scales.to(device=x.device, dtype=x.dtype).view(-1, 1, 1)
    ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype).view(1, height, 1) * s  # (B, H, 1)
    xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype).view(1, 1, width) * s  # (B, 1, W)
    grid = torch.stack([xs.expand(batch, height, width), ys.expand(batch, height, width)], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=True)
