"""Magnitude-aware weight perturbations, and the searches for sigma' and alpha' (SPEC §3).

:func:`sigma_prime` and :func:`alpha_prime` search for the perturbation scale at which the
training accuracy drops by the target (:mod:`icc_sharpness.search`). The accuracy of perturbed
copies of the network comes from a :class:`~icc_sharpness.evaluator.PerturbedEvaluator` (which
leaves the model bit-identical), and the drop at each scale from a
:class:`~icc_sharpness.drop_curve.DropCurve`, which counts only as far as the search needs.
The perturbations themselves are here: Gaussian draws scaled by each weight's magnitude, and the
projected sign-gradient ascent of the worst case.

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020: "pacbayes.mag" (sigma') and "sharpness.mag" (alpha').
Carbonnelle & De Vleeschouwer, "Intraclass clustering: an implicit learning ability that
regularizes DNNs", ICLR 2021: the kernel-only, batch-statistics variants (sigma'', alpha'').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icc_sharpness.drop_curve import DropCurve
from icc_sharpness.evaluator import (
    Params,
    PassCount,
    PerturbedEvaluator,
    perturbed_parameter_names,
    sharpness_subset,
)
from icc_sharpness.search import SearchResult, beyond_target_at_low, search_scale
from icc_sharpness.settings import RandomPerturbationSettings, WorstCasePerturbationSettings

__all__ = [
    "PassCount",
    "PerturbedEvaluator",
    "SharpnessResult",
    "alpha_prime",
    "FloorCheck",
    "drop_curve",
    "floor_drop",
    "gaussian_noise",
    "gaussian_perturbation",
    "perturbed_parameter_names",
    "sharpness_subset",
    "sigma_prime",
    "uniform_starts",
    "worst_case_perturbation",
]


@dataclass(frozen=True)
class SharpnessResult:
    """The outcome of :func:`sigma_prime` or :func:`alpha_prime`.

    Attributes
    ----------
    scale : float
        sigma' or alpha', in (0, search_high]: the relative perturbation scale at which the
        training accuracy drops by ``target_deviation``. Larger = flatter.
    search : SearchResult
        The search's trace, final bracket, evaluation count and convergence flag.
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

        At least 1 / search_high**2, and finite: at most 1 / resolution**2 with the bisection's
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
    together, in one vmapped gradient call per step when the evaluator is vectorized.
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


def _search(evaluator: PerturbedEvaluator, curve: DropCurve, settings) -> SharpnessResult:
    search = search_scale(curve, settings, drop_step=curve.drop_step)
    return SharpnessResult(
        search.value, search, evaluator.reference_accuracy, evaluator.perturbed_names, evaluator.n_samples, evaluator.passes
    )


def sigma_prime(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: RandomPerturbationSettings,
    generator: torch.Generator,
    *,
    vectorize: bool | None = None,
) -> SharpnessResult:
    """sigma': the magnitude-aware Gaussian scale at which the training accuracy drops by the target.

    Perturbations u ~ N(0, sigma^2 w^2 + eps^2) elementwise on the variant's parameters; the
    accuracy at sigma is the mean over ``mc_samples`` draws (the same standard normal draws at
    every sigma); the search over [search_low, search_high] of ``settings.search`` for the sigma
    at which the drop crosses ``target_deviation``. Measure = 1 / sigma'^2 (higher = sharper).

    Parameters
    ----------
    model : nn.Module
        The trained network; returned bit-identical (parameters, buffers, flags).
    x, y : Tensor
        (N, C, H, W) training inputs and (N,) int64 labels; the subset is drawn from them.
    settings : RandomPerturbationSettings
    generator : torch.Generator
        Seeds the subset and the draws; the same seed gives the same result on one device.
    vectorize : bool or None
        All draws in one vmapped call per chunk, or one at a time; None: by device
        (:class:`~icc_sharpness.evaluator.PerturbedEvaluator`). Cost only, not the result.
    """
    return _search(*drop_curve(model, x, y, settings, generator, vectorize=vectorize), settings)


def alpha_prime(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: WorstCasePerturbationSettings,
    generator: torch.Generator,
    *,
    vectorize: bool | None = None,
) -> SharpnessResult:
    """alpha': the magnitude-aware box half-width at which the worst-case training accuracy drops by the target.

    In the box |u| <= alpha |w| + eps elementwise on the variant's parameters, ``restarts``
    projected sign-gradient ascents on the cross-entropy (:func:`worst_case_perturbation`, the same
    uniform starts at every alpha) each end at a perturbation; the accuracy at alpha is the lowest
    of theirs. The search on alpha as for sigma'. Measure = 1 / alpha'^2 (higher = sharper). One
    restart whose drop is already beyond what the search asks about decides a scale, so on the
    CPU (one restart at a time) the other restarts' ascents are skipped there
    (:mod:`icc_sharpness.drop_curve`).

    Parameters are those of :func:`sigma_prime`, with ``WorstCasePerturbationSettings``.
    """
    return _search(*drop_curve(model, x, y, settings, generator, vectorize=vectorize), settings)


def drop_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: RandomPerturbationSettings | WorstCasePerturbationSettings,
    generator: torch.Generator,
    *,
    vectorize: bool | None = None,
) -> tuple[PerturbedEvaluator, DropCurve]:
    """The evaluator and the drop as a function of the scale that :func:`sigma_prime` (random
    settings) or :func:`alpha_prime` (worst-case settings) searches, drawn from ``generator`` in
    their order: the subset, then the Gaussian draws or the ascent starts."""
    indices = sharpness_subset(len(x), settings.sharpness_samples, generator)
    evaluator = PerturbedEvaluator(
        model, x[indices], y[indices], variant=settings.variant, batch_size=settings.batch_size, vectorize=vectorize
    )
    if isinstance(settings, WorstCasePerturbationSettings):
        starts = uniform_starts(evaluator.weights, evaluator.perturbed_names, settings.restarts, generator)

        def ascend(alpha: float, restarts: range) -> Params:
            return worst_case_perturbation(
                evaluator,
                {name: start[restarts.start : restarts.stop] for name, start in starts.items()},
                alpha,
                eps=settings.eps,
                ascent_steps=settings.ascent_steps,
                step_fraction=settings.step_fraction,
            )

        return evaluator, DropCurve(evaluator, ascend, settings.restarts, aggregate="min")
    noise = gaussian_noise(evaluator.weights, evaluator.perturbed_names, settings.mc_samples, generator)

    def draw(sigma: float, draws: range) -> Params:
        return gaussian_perturbation(
            evaluator.weights, {name: z[draws.start : draws.stop] for name, z in noise.items()}, sigma, settings.eps
        )

    return evaluator, DropCurve(evaluator, draw, settings.mc_samples, aggregate="mean")


@dataclass(frozen=True)
class FloorCheck:
    """What :func:`floor_drop` found: the drop at ``search_low`` and whether the search answers its floor."""

    drop: float
    degenerate: bool


def floor_drop(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: RandomPerturbationSettings | WorstCasePerturbationSettings,
    generator: torch.Generator,
    *,
    vectorize: bool | None = None,
) -> FloorCheck:
    """The training-accuracy drop at the smallest scale, ``search_low`` (0 by default): what the
    ``eps`` floor of the perturbation costs on its own.

    When it reaches the target (``degenerate``), the search has nothing to resolve and answers its
    floor, the first degenerate case of :mod:`icc_sharpness.search` (1 / scale**2 about 1.1e12 with
    the defaults), whatever the model's sharpness above that floor. The share of a population's
    models where that happens decides whether a setting of ``eps`` can rank it
    (``leaderboards/sharpness_floor.py``). Same subset and draws as the search with the same
    generator state, so ``degenerate`` is exactly "the search answers its floor".
    """
    _, curve = drop_curve(model, x, y, settings, generator, vectorize=vectorize)
    drop = float(curve(settings.search_low, math.inf))
    return FloorCheck(
        drop,
        beyond_target_at_low(
            drop, target=settings.target_deviation, tolerance=settings.tolerance, rule=settings.search, drop_step=curve.drop_step
        ),
    )
