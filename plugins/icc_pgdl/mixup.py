"""First place (Natekar & Sharma), part 2: label-wise mixup, the loss on images mixed within a class.

Every pair of images of one class in one group is mixed at lambda = 0.5 and the network's output
on the mixed image is scored against that class. A network whose class regions are convex in
input space (a linear classifier) gets every such image right; one that carved each training
image out separately does not.

Readings (the package docstring gives the sources): a class's training images, in a seeded order
(:mod:`icc_pgdl.sampling`), are cut into consecutive groups of ``group_size``; the first ``groups``
groups with at least two images are used. The loss is averaged over the mixed images of a group,
then over the class's groups, then over the classes; a class with fewer than two training images
is left out, as the winners' ``try``/``except`` leaves out a class that fails.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icc_bench import NotApplicable
from icc_pgdl.forward import logits
from icc_pgdl.sampling import seeded_stream
from icc_pgdl.settings import LabelwiseMixupSettings, MixupLoss


def mix_all_pairs(x: Tensor, lam: float = 0.5) -> Tensor:
    """``lam * x_i + (1 - lam) * x_j`` for every pair i < j, in row-major order of the pairs.

    Parameters
    ----------
    x : Tensor of shape (m, ...)
    lam : float

    Returns
    -------
    Tensor of shape (m (m - 1) / 2, ...)
        The pairs ordered (0, 1), (0, 2), ..., (1, 2), ... (``np.triu_indices(m, 1)``, as theirs).
    """
    first, second = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    return lam * x[first] + (1 - lam) * x[second]


def class_loss(outputs: Tensor, label: int, *, mixup_loss: MixupLoss = "error") -> float:
    """Loss of the outputs on mixed images against their class.

    ``"error"``: the fraction whose arg-max is not ``label`` (first maximum on ties), i.e.
    1 - accuracy. ``"cross_entropy"``: the mean of ``-log softmax(outputs)[label]``.

    Parameters
    ----------
    outputs : Tensor of shape (m, classes)
        Logits, m >= 1.
    label : int

    Returns
    -------
    float
        In [0, 1] for ``"error"``, >= 0 for ``"cross_entropy"``; lower: the network keeps the class.
    """
    if outputs.ndim != 2 or outputs.shape[0] == 0:
        raise ValueError(f"outputs has shape {tuple(outputs.shape)}: expected (m >= 1, classes) logits.")
    if mixup_loss == "error":
        return float((outputs.argmax(dim=1) != label).to(torch.float64).mean())
    if mixup_loss == "cross_entropy":
        target = torch.full((outputs.shape[0],), label, dtype=torch.int64, device=outputs.device)
        return float(F.cross_entropy(outputs.to(torch.float64), target))
    raise ValueError(f"mixup_loss={mixup_loss!r} is not supported: use 'error' or 'cross_entropy'.")


def class_groups(order: Tensor, labels: Tensor, group_size: int, groups: int) -> dict[int, list[Tensor]]:
    """Per class, up to ``groups`` consecutive groups of ``group_size`` indices taken in ``order``.

    A last, shorter group is kept when it has at least two indices (a pair to mix); a class with
    none is absent from the result.
    """
    ordered_labels = labels.cpu()[order]
    result = {}
    for label in torch.unique(ordered_labels).tolist():
        members = order[ordered_labels == label]
        chunks = [chunk for chunk in members.split(group_size) if len(chunk) >= 2][:groups]
        if chunks:
            result[label] = chunks
    return result


def labelwise_mixup(
    model: nn.Module, x: Tensor, labels: Tensor, settings: LabelwiseMixupSettings, generator: torch.Generator
) -> float:
    """Mean over classes of the mean over groups of the loss on within-class mixed images.

    Parameters
    ----------
    model : nn.Module
        In the mode it should be read in (eval); not modified.
    x : Tensor of shape (N, C, H, W)
        Training images.
    labels : Tensor of shape (N,)
        Their training labels.
    settings : LabelwiseMixupSettings
    generator : torch.Generator
        CPU generator of the seeded order of the samples.
    """
    order = seeded_stream(x, labels, len(labels), generator)
    groups = [(label, chunk) for label, chunks in class_groups(order, labels, settings.group_size, settings.groups).items() for chunk in chunks]
    if not groups:
        raise NotApplicable("no class has two training images to mix")
    # Groups go through the network together, about batch_size mixed images at a time.
    losses: dict[int, list[float]] = {}
    pending: list[tuple[int, Tensor]] = []
    for index, (label, chunk) in enumerate(groups):
        pending.append((label, mix_all_pairs(x[chunk.to(x.device)])))
        if sum(len(m) for _, m in pending) >= settings.batch_size or index == len(groups) - 1:
            outputs = logits(model, torch.cat([m for _, m in pending]), batch_size=settings.batch_size)
            for (group_label, _), group_outputs in zip(pending, outputs.split([len(m) for _, m in pending])):
                losses.setdefault(group_label, []).append(class_loss(group_outputs, group_label, mixup_loss=settings.mixup_loss))
            pending = []
    per_class = [sum(values) / len(values) for values in losses.values()]
    return sum(per_class) / len(per_class)
