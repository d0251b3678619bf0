"""Mini-batches of tensors that already sit on the training device, and the paper's augmentation.

No DataLoader and no worker processes: every dataset here fits in (GPU) memory, so a batch is an
index slice of the full tensors, and augmentation runs on the whole batch at once on its device.
Randomness comes only from the generator passed in, which must live on the same device as the
tensors (``torch.Generator(device=x.device)``), so a run is reproducible on any device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest shift, in pixels, in each direction (the paper: "shifts of up to 4 pixels").
MAX_SHIFT = 4


def _check_generator(generator: torch.Generator | None, device: torch.device, purpose: str) -> torch.Generator:
    if generator is None:
        raise ValueError(f"{purpose} needs a torch.Generator; pass torch.Generator(device={str(device)!r}).manual_seed(seed)")
    gen_device = generator.device
    # An index of None means "the current device" and matches any index of that type.
    if gen_device.type != device.type or (
        gen_device.index is not None and device.index is not None and gen_device.index != device.index
    ):
        raise ValueError(
            f"{purpose}: the generator is on {gen_device} but the tensors are on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )
    return generator


def draw_augmentation(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The random part of :func:`augment_batch` for ``n`` images, on the generator's device.

    Returns
    -------
    offsets : Tensor
        (n, 2) int64 in [0, 2 * MAX_SHIFT]: top-left corner (row, column) of each crop in the
        padded image; ``MAX_SHIFT`` in both is the unshifted image.
    flips : Tensor
        (n,) bool, True with probability 0.5: mirror that image left-right.
    """
    device = generator.device
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (n, 2), generator=generator, device=device)
    flips = torch.rand(n, generator=generator, device=device) < 0.5
    return offsets, flips


def apply_augmentation(x: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
    """Crop every image of ``x`` (B, C, H, W) at ``offsets`` from its reflection-padded copy, then flip.

    Pure indexing: one gather over the whole batch, no per-image Python loop.
    """
    batch, channels, height, width = x.shape
    padded = F.pad(x, (MAX_SHIFT,) * 4, mode="reflect")  # (B, C, H + 8, W + 8)
    rows = offsets[:, 0, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(width, device=x.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # mirrored images read their columns backwards
    return padded[
        torch.arange(batch, device=x.device)[:, None, None, None],
        torch.arange(channels, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # (B, C, H, W)


def augment_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to 4 pixels (reflection padding) and random horizontal flips.

    Each image is padded by 4 pixels on every side by reflection, cropped back to H x W at a uniform
    random offset in [0, 8] per axis (a shift of -4..4 pixels), and mirrored left-right with
    probability 0.5 (the paper's augmentation, SPEC §4). Runs on the batch's device.

    Parameters
    ----------
    x : Tensor
        (B, C, H, W) images with H, W > 4 (reflection padding needs more pixels than it adds).
    generator : torch.Generator
        On the same device as ``x``; consumed for the offsets and the flips.

    Returns
    -------
    Tensor
        (B, C, H, W), a new tensor of the same dtype and device.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_batch expects images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    if min(x.shape[2:]) <= MAX_SHIFT:
        raise ValueError(
            f"augment_batch needs images larger than {MAX_SHIFT} pixels per side for reflection padding, "
            f"got {x.shape[2]}x{x.shape[3]}; turn augmentation off for such images"
        )
    _check_generator(generator, x.device, "augment_batch")
    offsets, flips = draw_augmentation(x.shape[0], generator)
    return apply_augmentation(x, offsets, flips)


def iterate_batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: bool,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x_batch, y_batch)`` slices covering every sample once, the last batch possibly smaller.

    Parameters
    ----------
    x, y : Tensor
        (N, ...) samples and (N,) labels on the same device.
    batch_size : int
        At least 1.
    shuffle : bool
        Visit the samples in the order of a random permutation drawn from ``generator``.
    generator : torch.Generator or None
        On the tensors' device; needed when ``shuffle`` or ``augment``.
    augment : bool
        Pass every image batch through :func:`augment_batch` (same generator).
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"iterate_batches got {n} samples but {y.shape[0]} labels")
    if y.device != x.device:
        raise ValueError(f"iterate_batches got samples on {x.device} but labels on {y.device}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if shuffle or augment:
        _check_generator(generator, x.device, "iterate_batches with shuffle or augment")
    order = torch.randperm(n, generator=generator, device=x.device) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            xb, yb = x[index], y[index]
        if augment:
            xb = augment_batch(xb, generator)
        yield xb, yb
