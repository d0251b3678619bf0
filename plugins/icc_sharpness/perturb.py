"""Magnitude-aware weight perturbations, evaluated many at a time, the model left untouched.

The machinery behind the four sharpness measures (SPEC §3): a :class:`PerturbedEvaluator` holds a
private evaluation copy of the network and its training subset, and returns the training accuracy
of a whole stack of perturbed parameter sets in one call per data chunk. :func:`sigma_prime` and
:func:`alpha_prime` bisect for the perturbation scale at which that accuracy drops by the target.

How the model stays bit-identical: the network is deep-copied once, and every forward pass goes
through ``torch.func.functional_call`` with parameter tensors that the search builds out of place
(``w + u``); nothing writes to the caller's parameters, buffers or train/eval flags.

How many perturbations are evaluated at once: the perturbed parameter sets carry a leading copy
dimension (Monte Carlo draws, or ascent restarts), and ``torch.func.vmap`` maps the functional
forward (and, for the ascent, ``torch.func.grad``) over it, so each data chunk is one call for all
copies. Parameters that are not perturbed enter unbatched. This is for accelerators, where one
chunk through one network leaves most of the device idle (not measured here: no GPU was at hand).
On 2 CPU cores one chunk already fills the cores, and the batched calls run as fast as a loop over
copies, no faster (``bench/sharpness_cost.py`` prints both).

BatchNorm in batch-statistics mode (the double-primed variant): in the evaluation copy every
BatchNorm gets ``track_running_stats=False`` and its running buffers set to None. A BatchNorm
without running buffers normalises by the statistics of the batch it sees, in eval mode too, and
has nothing to update, so no buffer is written and the layer needs no train mode (dropout stays
off). This is also the form under which ``vmap`` supports batch statistics: each perturbed copy
normalises by its own batch statistics. The unperturbed reference accuracy is measured the same way,
so that a zero perturbation is a zero drop.

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020: "pacbayes.mag" (sigma') and "sharpness.mag" (alpha').
Carbonnelle & De Vleeschouwer, "Intraclass clustering: an implicit learning ability that
regularizes DNNs", ICLR 2021: the kernel-only, batch-statistics variants (sigma'', alpha'').
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

from icc_sharpness.search import SearchResult, search_scale
from icc_sharpness.settings import (
    RandomPerturbationSettings,
    SharpnessSearchSettings,
    Variant,
    WorstCasePerturbationSettings,
)

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
    module.requires_grad_(False)  # gradients come from torch.func.grad, never from module state
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


class PerturbedEvaluator:
    """Training accuracy and loss gradients of stacks of perturbed copies of one network.

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

    Attributes
    ----------
    weights : dict of Tensor
        Every parameter of the network (detached, on its device).
    perturbed_names : tuple of str
        The parameters the variant perturbs; a perturbation is a dict over exactly these names.
    chunks : list of (Tensor, Tensor)
        The (inputs, labels) chunks, in the subset's order.
    passes : PassCount
        Passes spent so far by this evaluator.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, variant: Variant, batch_size: int) -> None:
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
        x, y = x.to(device), y.to(device)
        n_chunks = math.ceil(len(x) / batch_size)
        self.chunks = list(zip(x.tensor_split(n_chunks), y.tensor_split(n_chunks)))
        self.n_samples = len(x)
        self.passes = PassCount()
        # Perturbed parameters carry the copy dimension (in_dims 0); the input chunk is shared.
        self._batched_logits = vmap(self._logits, in_dims=(0, None))
        self._batched_gradient = vmap(grad(self._loss), in_dims=(0, None, None))

    def _logits(self, perturbed: Params, x: Tensor) -> Tensor:
        return functional_call(self.module, {**self._fixed, **perturbed}, (x,))

    def _loss(self, perturbed: Params, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self._logits(perturbed, x), y)

    def logits(self, perturbed: Params, x: Tensor) -> Tensor:
        """(copies, n, classes) logits of each perturbed copy on the inputs x (n, C, H, W)."""
        return self._batched_logits(perturbed, x)

    @torch.no_grad()
    def accuracies(self, perturbed: Params) -> Tensor:
        """(copies,) float64 training accuracy of each perturbed copy on the whole subset.

        ``perturbed`` maps each of ``perturbed_names`` to a (copies, *shape) stack of values.
        """
        copies = len(next(iter(perturbed.values())))
        correct = torch.zeros(copies, dtype=torch.float64, device=self.chunks[0][1].device)
        for x, y in self.chunks:
            logits = self.logits(perturbed, x)  # (copies, chunk, classes)
            correct += (logits.argmax(dim=-1) == y).sum(dim=1)
            self.passes.forward_calls += 1
            self.passes.forward_evaluations += copies
        return correct / self.n_samples

    def unperturbed_accuracy(self) -> float:
        """Training accuracy of the network itself, BatchNorm as the variant evaluates it."""
        return float(self.accuracies({name: self.weights[name].unsqueeze(0) for name in self.perturbed_names})[0])

    def loss_gradients(self, perturbed: Params, x: Tensor, y: Tensor) -> Params:
        """Gradient of each copy's mean cross-entropy on (x, y) with respect to its perturbed parameters."""
        copies = len(next(iter(perturbed.values())))
        self.passes.forward_calls += 1
        self.passes.backward_calls += 1
        self.passes.forward_evaluations += copies
        self.passes.backward_evaluations += copies
        return self._batched_gradient(perturbed, x, y)


@dataclass(frozen=True)
class SharpnessResult:
    """The outcome of :func:`sigma_prime` or :func:`alpha_prime`.

    Attributes
    ----------
    scale : float
        sigma' or alpha', in (0, search_high): the relative perturbation scale at which the training
        accuracy drops by ``target_deviation``. Larger = flatter.
    search : SearchResult
        The bisection's trace, evaluation count and convergence flag.
    unperturbed_accuracy : float
        The reference accuracy on the subset, in the variant's BatchNorm mode.
    perturbed_names : tuple of str
        The parameters that were perturbed.
    n_samples : int
        Size of the training subset.
    passes : PassCount
        Forward and backward passes spent.
    """

    scale: float
    search: SearchResult
    unperturbed_accuracy: float
    perturbed_names: tuple[str, ...]
    n_samples: int
    passes: PassCount

    @property
    def inverse_square(self) -> float:
        """The measure, 1 / scale**2; higher = sharper.

        Above 1 / search_high**2, and finite: at most 1 / resolution**2 with the bisection's
        resolution (search_high - search_low) / 2**(max_steps + 1), about 1.1e12 with the defaults.
        """
        return 1.0 / self.scale**2


def _draw(shape: tuple[int, ...], like: Tensor, generator: torch.Generator, uniform: bool) -> Tensor:
    # Drawn in float32 on the generator's device, then moved: the same numbers on every device.
    if uniform:
        values = torch.rand(shape, generator=generator, device=generator.device) * 2 - 1
    else:
        values = torch.randn(shape, generator=generator, device=generator.device)
    return values.to(device=like.device, dtype=like.dtype)


def gaussian_noise(weights: Params, names: tuple[str, ...], draws: int, generator: torch.Generator) -> Params:
    """Standard normal z of shape (draws, *w.shape) for each named parameter, drawn in ``names`` order."""
    return {name: _draw((draws, *weights[name].shape), weights[name], generator, uniform=False) for name in names}


def uniform_starts(weights: Params, names: tuple[str, ...], restarts: int, generator: torch.Generator) -> Params:
    """Uniform values in [-1, 1) of shape (restarts, *w.shape): ascent starts relative to the box."""
    return {name: _draw((restarts, *weights[name].shape), weights[name], generator, uniform=True) for name in names}


def gaussian_perturbation(weights: Params, noise: Params, sigma: float, eps: float) -> Params:
    """Perturbed parameters w + u with u = sqrt(sigma^2 w^2 + eps^2) z, elementwise (pacbayes.mag).

    The perturbation's standard deviation is proportional to each weight's magnitude, with ``eps``
    as a floor, so rescaling a layer that a BatchNorm follows rescales its perturbation with it.
    """
    out = {}
    for name, z in noise.items():
        w = weights[name]
        out[name] = w + torch.sqrt(sigma**2 * w.square() + eps**2) * z
    return out


def worst_case_perturbation(
    evaluator: PerturbedEvaluator, starts: Params, alpha: float, *, eps: float, ascent_steps: int, step_fraction: float
) -> Params:
    """Perturbed parameters w + u after projected sign-gradient ascent on the cross-entropy (sharpness.mag).

    Box: |u| <= r = alpha |w| + eps elementwise. Start: u = r * starts. Step t uses chunk
    ``t mod n_chunks`` of the subset: u <- clip(u + step_fraction * r * sign(grad_u CE), -r, r).
    Sign steps proportional to r make the ascent invariant to rescaling a layer that a
    BatchNorm follows, as the box is. All restarts (the leading dimension of ``starts``) ascend
    together in one vmapped gradient call per step.
    """
    box = {name: alpha * evaluator.weights[name].abs() + eps for name in starts}
    offsets = {name: box[name] * start for name, start in starts.items()}
    for step in range(ascent_steps):
        x, y = evaluator.chunks[step % len(evaluator.chunks)]
        perturbed = {name: evaluator.weights[name] + u for name, u in offsets.items()}
        gradients = evaluator.loss_gradients(perturbed, x, y)
        for name, r in box.items():
            moved = offsets[name] + step_fraction * r * gradients[name].sign()
            offsets[name] = torch.minimum(torch.maximum(moved, -r), r)
    return {name: evaluator.weights[name] + u for name, u in offsets.items()}


def _bisect(evaluator: PerturbedEvaluator, settings: SharpnessSearchSettings, accuracy_at) -> tuple[float, SearchResult]:
    reference = evaluator.unperturbed_accuracy()
    search = search_scale(lambda scale, above: reference - accuracy_at(scale), settings)
    return reference, search


def sigma_prime(
    model: nn.Module, x: Tensor, y: Tensor, settings: RandomPerturbationSettings, generator: torch.Generator
) -> SharpnessResult:
    """sigma': the magnitude-aware Gaussian scale at which the training accuracy drops by the target.

    Perturbations u ~ N(0, sigma^2 w^2 + eps^2) elementwise on the variant's parameters; the
    accuracy at sigma is the mean over ``mc_samples`` draws (the same standard normal draws at
    every sigma); bisection on sigma over [search_low, search_high] until the drop is within
    ``tolerance`` of ``target_deviation``. Measure = 1 / sigma'^2 (higher = sharper).

    Parameters
    ----------
    model : nn.Module
        The trained network; returned bit-identical (parameters, buffers, flags).
    x, y : Tensor
        (N, C, H, W) training inputs and (N,) int64 labels; the subset is drawn from them.
    settings : RandomPerturbationSettings
    generator : torch.Generator
        Seeds the subset and the draws; the same seed gives the same result on one device.
    """
    indices = sharpness_subset(len(x), settings.sharpness_samples, generator)
    evaluator = PerturbedEvaluator(model, x[indices], y[indices], variant=settings.variant, batch_size=settings.batch_size)
    noise = gaussian_noise(evaluator.weights, evaluator.perturbed_names, settings.mc_samples, generator)

    def accuracy_at(sigma: float) -> float:
        perturbed = gaussian_perturbation(evaluator.weights, noise, sigma, settings.eps)
        return float(evaluator.accuracies(perturbed).mean())

    reference, search = _bisect(evaluator, settings, accuracy_at)
    return SharpnessResult(search.value, search, reference, evaluator.perturbed_names, evaluator.n_samples, evaluator.passes)


def alpha_prime(
    model: nn.Module, x: Tensor, y: Tensor, settings: WorstCasePerturbationSettings, generator: torch.Generator
) -> SharpnessResult:
    """alpha': the magnitude-aware box half-width at which the worst-case training accuracy drops by the target.

    In the box |u| <= alpha |w| + eps elementwise on the variant's parameters, ``restarts``
    projected sign-gradient ascents on the cross-entropy (:func:`worst_case_perturbation`, the same
    uniform starts at every alpha) each end at a perturbation; the accuracy at alpha is the lowest
    of theirs. Bisection on alpha as for sigma'. Measure = 1 / alpha'^2 (higher = sharper).

    Parameters are those of :func:`sigma_prime`, with ``WorstCasePerturbationSettings``.
    """
    indices = sharpness_subset(len(x), settings.sharpness_samples, generator)
    evaluator = PerturbedEvaluator(model, x[indices], y[indices], variant=settings.variant, batch_size=settings.batch_size)
    starts = uniform_starts(evaluator.weights, evaluator.perturbed_names, settings.restarts, generator)

    def accuracy_at(alpha: float) -> float:
        perturbed = worst_case_perturbation(
            evaluator,
            starts,
            alpha,
            eps=settings.eps,
            ascent_steps=settings.ascent_steps,
            step_fraction=settings.step_fraction,
        )
        return float(evaluator.accuracies(perturbed).min())

    reference, search = _bisect(evaluator, settings, accuracy_at)
    return SharpnessResult(search.value, search, reference, evaluator.perturbed_names, evaluator.n_samples, evaluator.passes)
