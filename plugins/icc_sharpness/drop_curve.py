"""The accuracy drop as a function of the perturbation scale, evaluated only as far as the search needs.

A :class:`DropCurve` is the ``drop_at(scale, above)`` evaluator of :mod:`icc_sharpness.search`
for a stack of K perturbed copies of a network (Monte Carlo draws, or ascent restarts):

    drop(scale) = reference accuracy - aggregate over copies k of accuracy_k(scale)

with the aggregate the mean (sigma': the expected accuracy under random perturbations) or the
minimum (alpha': the worst of the ascents). The accuracies are counted in units of one group of
copies on one data chunk, and after every unit the curve knows a lower bound of the drop: each
copy's accuracy is at most (correct so far + samples not yet counted) / n, so

    mean: drop >= reference - sum_k (c_k + r_k) / (n K)
    min:  drop >= reference - min_k (c_k + r_k) / n

(c_k correct predictions counted, r_k samples not yet counted for copy k; equal to the drop once
every r_k is 0). When the bound exceeds the search's ``above`` the outcome is decided, and the
curve returns the bound as a :class:`~icc_sharpness.search.LowerBound` without counting the rest.
That is what makes the search cheaper than counting every sample of every copy: a midpoint far
above the target is decided after a chunk or a restart. The value the search ends with is
unchanged, since every drop it interpolates is complete.

Order of the units: for the mean, chunk by chunk, every copy on each (the likeliest flips first:
see ``PerturbedEvaluator.accuracy_chunks``); for the minimum, copy group by copy group, every chunk
of one before the next, since one copy whose drop is beyond ``above`` already decides it and the
copies' perturbations are the expensive part (the worst-case ascent).

Resuming: the search asks again, with ``above = inf``, only for the top of its final bracket, and
that is always the last scale whose evaluation stopped early. The curve keeps the counts of that
one scale (and the perturbed copies of the group it stopped in), so the second request finishes
the count instead of repeating it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from icc_sharpness.evaluator import Params, PerturbedEvaluator
from icc_sharpness.search import LowerBound

#: ``perturb(scale, copies) -> Params``: the perturbed parameters of ``copies`` (a range of copy
#: indices) at ``scale``, each a (len(copies), *shape) stack. The same scale and copies always give
#: the same values (common random numbers).
Perturb = Callable[[float, range], Params]


@dataclass
class _Count:
    """Correct predictions counted so far at one scale: correct[k, c] for copy k on chunk c."""

    correct: torch.Tensor  # (copies, chunks) int64, on the CPU
    counted: torch.Tensor  # (copies, chunks) bool
    started: dict[int, Params] = field(default_factory=dict)  # group index -> its perturbed copies, while counted


class DropCurve:
    """``drop_at(scale, above)`` over K perturbed copies, counted lazily (module docstring).

    Parameters
    ----------
    evaluator : PerturbedEvaluator
        The network, subset and chunks; its ``reference_accuracy`` is the unperturbed accuracy.
    perturb : callable
        ``perturb(scale, copies) -> Params`` (see :data:`Perturb`).
    copies : int
        K, the number of perturbed copies per scale.
    aggregate : {"mean", "min"}
        How the copies' accuracies combine into the accuracy at a scale.
    """

    def __init__(self, evaluator: PerturbedEvaluator, perturb: Perturb, copies: int, aggregate: Literal["mean", "min"]):
        self.evaluator, self.perturb, self.copies, self.aggregate = evaluator, perturb, copies, aggregate
        group = copies if evaluator.vectorize else 1
        self.groups = [range(start, min(start + group, copies)) for start in range(0, copies, group)]
        n_chunks = len(evaluator.accuracy_chunks)
        self.chunk_sizes = torch.tensor([len(y) for _, y in evaluator.accuracy_chunks])
        self._units = (
            [(g, c) for c in range(n_chunks) for g in range(len(self.groups))]  # chunk by chunk
            if aggregate == "mean"
            else [(g, c) for g in range(len(self.groups)) for c in range(n_chunks)]  # copy group by copy group
        )
        self._resumable: tuple[float, _Count] | None = None
        #: The drop moves in steps of this: one sample of one copy of the mean, one sample of the minimum.
        self.drop_step = 1 / (evaluator.n_samples * (copies if aggregate == "mean" else 1))

    def drop_bound(self, count: _Count) -> float:
        """The least drop consistent with the counts so far; the drop itself once all is counted."""
        uncounted = (~count.counted * self.chunk_sizes).sum(dim=1)  # (copies,) samples not yet counted
        upper = (count.correct.sum(dim=1) + uncounted).double() / self.evaluator.n_samples  # (copies,)
        accuracy = upper.mean() if self.aggregate == "mean" else upper.min()
        return self.evaluator.reference_accuracy - float(accuracy)

    def __call__(self, scale: float, above: float) -> float:
        if self._resumable is not None and self._resumable[0] == scale:
            count = self._resumable[1]
        else:
            n_chunks = len(self.evaluator.accuracy_chunks)
            count = _Count(
                torch.zeros(self.copies, n_chunks, dtype=torch.int64), torch.zeros(self.copies, n_chunks, dtype=torch.bool)
            )
        for g, c in self._units:
            copies = self.groups[g]
            if bool(count.counted[copies.start, c]):
                continue
            if g not in count.started:
                count.started[g] = self.perturb(scale, copies)
            count.correct[copies.start : copies.stop, c] = self.evaluator.correct(count.started[g], c).cpu()
            count.counted[copies.start : copies.stop, c] = True
            if bool(count.counted[copies.start : copies.stop].all()):
                del count.started[g]  # this group is fully counted: its copies are no longer needed
            bound = self.drop_bound(count)
            if bound > above and not bool(count.counted.all()):
                self._resumable = (scale, count)  # the search may come back for this one (module docstring)
                return LowerBound(bound)
        if self._resumable is not None and self._resumable[0] == scale:
            self._resumable = None
        return self.drop_bound(count)
