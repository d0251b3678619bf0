"""Training accuracy and loss gradients of perturbed copies of a network, the network left untouched.

A :class:`PerturbedEvaluator` holds a private evaluation copy of the network and its sharpness
subset (SPEC §3), and evaluates perturbed parameter sets on it: correct predictions per data chunk,
and loss gradients for the worst-case ascent. The searches in :mod:`icc_sharpness.perturb` and
:mod:`icc_sharpness.drop_curve` build on it.

How the model stays bit-identical: the network is deep-copied once, and every forward pass goes
through ``torch.func.functional_call`` with parameter tensors built out of place (``w + u``);
nothing writes to the caller's parameters, buffers or train/eval flags.

How many perturbed copies one network call evaluates (``vectorize``). Perturbed parameter sets
carry a leading copy dimension (Monte Carlo draws, or ascent restarts). Vectorized, ``vmap`` maps
the functional forward (and ``torch.func.grad`` for the ascent) over that dimension, so each data
chunk is one call for all copies: on an accelerator, one chunk through one small network leaves
most of the device idle. On the CPU the copies go one at a time, gradients by plain autograd,
because there that measured faster: one chunk already fills the cores, vmap's grouped
convolutions and batching rules add work, and functorch decomposes batch-statistics BatchNorm
into many small operations for the gradient (``bench/sharpness_cost.py`` prints its vmapped row
beside the default). The default is vectorized exactly when the network is not on the CPU. Either
way each copy goes through the same operations on the same inputs; only floating-point rounding
differs (a grouped convolution against single ones), which can flip a sample at a near-tie and
move the scale slightly.

The unperturbed forward pass is made once, in the constructor: it gives the reference accuracy
and each sample's margin (its true-class logit minus the largest other logit), which orders the
accuracy chunks so that the samples most likely to flip under a perturbation come first (see
:class:`PerturbedEvaluator`); an evaluation that stops once its outcome is decided then stops
sooner. The order never changes a complete count.

BatchNorm in batch-statistics mode (the double-primed variant): in the evaluation copy every
BatchNorm gets ``track_running_stats=False`` and its running buffers set to None. A BatchNorm
without running buffers normalises by the statistics of the batch it sees, in eval mode too, and
has nothing to update, so no buffer is written and the layer needs no train mode (dropout stays
off). This is also the form under which ``vmap`` supports batch statistics: each perturbed copy
normalises by its own batch statistics. The unperturbed reference accuracy is measured the same way,
so that a zero perturbation is a zero drop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from icc_sharpness.settings import Variant

#: Parameter tensors by their ``named_parameters`` name.
Params = dict[str, Tensor]


@dataclass
class PassCount:
    """Forward and backward passes spent, counted two ways.

    ``*_calls`` count network invocations, where one vmapped call evaluates every perturbed copy
    on one data chunk. ``*_evaluations`` count (perturbed copy, chunk) pairs: the invocations a
    one-copy-at-a-time loop makes for the same numbers.
    """

    forward_calls: int = 0
    backward_calls: int = 0
    forward_evaluations: int = 0
    backward_evaluations: int = 0


def perturbed_parameter_names(model: nn.Module, variant: Variant) -> tuple[str, ...]:
    """The parameters a variant perturbs, in ``named_parameters`` order.

    ``"all_params_bn_eval"``: every parameter. ``"kernels_bn_batch_stats"``: the conv and linear
    kernels, i.e. the parameters with ndim > 1 (biases and BatchNorm affine weights are vectors).
    """
    named = list(model.named_parameters())
    if variant == "kernels_bn_batch_stats":
        named = [(name, p) for name, p in named if p.ndim > 1]
    return tuple(name for name, _ in named)


def sharpness_subset(n_train: int, sharpness_samples: int | None, generator: torch.Generator) -> Tensor:
    """Sorted indices of the fixed seeded training subset; all ``n_train`` when it is not larger.

    Draws from ``generator`` only when a strict subset is taken, so every measure that starts
    from the same seed uses the same samples.
    """
    if sharpness_samples is None or sharpness_samples >= n_train:
        return torch.arange(n_train)
    return torch.randperm(n_train, generator=generator, device=generator.device)[:sharpness_samples].sort().values.cpu()


def _evaluation_copy(model: nn.Module, variant: Variant) -> nn.Module:
    module = copy.deepcopy(model).eval()  # eval: dropout off, BatchNorm on running statistics
    module.requires_grad_(False)  # gradients are taken with respect to the perturbed tensors only
    if variant == "kernels_bn_batch_stats":
        for layer in module.modules():
            if isinstance(layer, _BatchNorm):
                # Without running buffers BatchNorm normalises by the batch's statistics even in
                # eval mode, and has nothing to update (module docstring).
                layer.track_running_stats = False
                layer.running_mean = None
                layer.running_var = None
                layer.num_batches_tracked = None
    return module


def _margins(logits: Tensor, y: Tensor) -> Tensor:
    """(n,) true-class logit minus the largest other logit: negative where the prediction is wrong."""
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.amax(dim=1)


class PerturbedEvaluator:
    """Correct predictions and loss gradients of stacks of perturbed copies of one network.

    Parameters
    ----------
    model : nn.Module
        The trained network; deep-copied, never modified.
    x : Tensor
        (n, C, H, W) inputs of the sharpness subset; moved to the model's device.
    y : Tensor
        (n,) int64 labels.
    variant : Variant
        Which parameters are perturbed and how BatchNorm normalises (settings.Variant).
    batch_size : int
        The subset is cut into ``ceil(n / batch_size)`` nearly equal consecutive chunks, so no
        chunk is tiny: a BatchNorm batch of one sample has no variance.
    vectorize : bool or None
        Evaluate all copies of a stack in one vmapped call per chunk (True) or one copy at a time
        (False); None: vectorized unless the network is on the CPU (module docstring).

    Attributes
    ----------
    weights : dict of Tensor
        Every parameter of the network (detached, on its device).
    perturbed_names : tuple of str
        The parameters the variant perturbs; a perturbation is a dict over exactly these names.
    chunks : list of (Tensor, Tensor)
        The consecutive (inputs, labels) chunks, in the subset's order: the BatchNorm batches of
        the batch-statistics variant and the minibatches of the gradient ascent.
    accuracy_chunks : list of (Tensor, Tensor)
        What accuracies are counted on, the likeliest flips first. With BatchNorm on running
        statistics a sample's prediction does not depend on its batch, so the subset is sorted by
        unperturbed margin and cut into chunks as above; with batch statistics the chunks are
        ``chunks``, ordered by their mean margin (their membership fixes the statistics).
    reference_accuracy : float
        Training accuracy of the unperturbed network on the subset, BatchNorm as the variant
        evaluates it.
    passes : PassCount
        Passes spent so far by this evaluator (the unperturbed one included).
    """

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, variant: Variant, batch_size: int, vectorize: bool | None = None
    ) -> None:
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"sharpness needs as many labels as inputs, at least one; got {len(x)} inputs, {len(y)} labels")
        self.module = _evaluation_copy(model, variant)
        self.weights: Params = {name: p.detach() for name, p in self.module.named_parameters()}
        if not self.weights:
            raise ValueError(f"{type(model).__name__} has no parameters to perturb")
        self.perturbed_names = perturbed_parameter_names(self.module, variant)
        if not self.perturbed_names:
            raise ValueError(
                f"variant {variant!r} perturbs no parameter of {type(model).__name__}: it has no conv or linear "
                "kernel (parameter with ndim > 1); use variant 'all_params_bn_eval'"
            )
        self._fixed = {name: w for name, w in self.weights.items() if name not in self.perturbed_names}
        device = next(iter(self.weights.values())).device
        self.vectorize = device.type != "cpu" if vectorize is None else vectorize
        x, y = x.to(device), y.to(device)
        n_chunks = math.ceil(len(x) / batch_size)
        self.chunks = list(zip(x.tensor_split(n_chunks), y.tensor_split(n_chunks)))
        self.n_samples = len(x)
        self.passes = PassCount()
        # Perturbed parameters carry the copy dimension (in_dims 0); the input chunk is shared.
        self._batched_logits = vmap(self._logits, in_dims=(0, None))
        self._batched_gradient = vmap(grad(self._loss), in_dims=(0, None, None))

        unperturbed = {name: self.weights[name].unsqueeze(0) for name in self.perturbed_names}
        with torch.no_grad():
            margins = [_margins(self.logits(unperturbed, xb)[0], yb) for xb, yb in self.chunks]  # (chunk,) each
        self.passes.forward_calls += len(self.chunks)
        self.passes.forward_evaluations += len(self.chunks)
        self.reference_accuracy = sum(int((m > 0).sum()) for m in margins) / self.n_samples
        if variant == "all_params_bn_eval":
            order = torch.cat(margins).argsort(stable=True)
            self.accuracy_chunks = list(zip(x[order].tensor_split(n_chunks), y[order].tensor_split(n_chunks)))
        else:
            means = torch.stack([m.mean() for m in margins])
            self.accuracy_chunks = [self.chunks[i] for i in means.argsort(stable=True).tolist()]

    def _logits(self, perturbed: Params, x: Tensor) -> Tensor:
        return functional_call(self.module, {**self._fixed, **perturbed}, (x,))

    def _loss(self, perturbed: Params, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self._logits(perturbed, x), y)

    def logits(self, perturbed: Params, x: Tensor) -> Tensor:
        """(copies, n, classes) logits of each perturbed copy on the inputs x (n, C, H, W)."""
        if self.vectorize:
            return self._batched_logits(perturbed, x)
        copies = len(next(iter(perturbed.values())))
        return torch.stack([self._logits({name: p[k] for name, p in perturbed.items()}, x) for k in range(copies)])

    @torch.no_grad()
    def correct(self, perturbed: Params, chunk: int) -> Tensor:
        """(copies,) int64 correct predictions of each perturbed copy on ``accuracy_chunks[chunk]``.

        ``perturbed`` maps each of ``perturbed_names`` to a (copies, *shape) stack of values.
        """
        x, y = self.accuracy_chunks[chunk]
        copies = len(next(iter(perturbed.values())))
        self.passes.forward_calls += 1 if self.vectorize else copies
        self.passes.forward_evaluations += copies
        return (self.logits(perturbed, x).argmax(dim=-1) == y).sum(dim=1)  # (copies,)

    def accuracies(self, perturbed: Params) -> Tensor:
        """(copies,) float64 training accuracy of each perturbed copy on the whole subset."""
        counts = sum(self.correct(perturbed, chunk) for chunk in range(len(self.accuracy_chunks)))
        return counts.double() / self.n_samples

    def loss_gradients(self, perturbed: Params, x: Tensor, y: Tensor) -> Params:
        """Gradient of each copy's mean cross-entropy on (x, y) with respect to its perturbed parameters."""
        copies = len(next(iter(perturbed.values())))
        calls = 1 if self.vectorize else copies
        self.passes.forward_calls += calls
        self.passes.backward_calls += calls
        self.passes.forward_evaluations += copies
        self.passes.backward_evaluations += copies
        if self.vectorize:
            return self._batched_gradient(perturbed, x, y)
        gradients: dict[str, list[Tensor]] = {name: [] for name in perturbed}
        for k in range(copies):
            leaves = {name: p[k].detach().requires_grad_() for name, p in perturbed.items()}
            with torch.enable_grad():
                loss = self._loss(leaves, x, y)
                for name, g in zip(leaves, torch.autograd.grad(loss, list(leaves.values()))):
                    gradients[name].append(g)
        return {name: torch.stack(g) for name, g in gradients.items()}
