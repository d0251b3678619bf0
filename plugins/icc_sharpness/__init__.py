"""Sharpness baselines: magnitude-aware random and worst-case perturbation measures (SPEC §3).

Four complexity measures (higher = sharper = predicts worse generalization), each the inverse
square of the relative perturbation scale at which the training accuracy drops by 0.1:

- ``inv_sigma_prime`` (1/sigma'^2, "pacbayes.mag"): Gaussian u ~ N(0, sigma'^2 w^2 + eps^2) on
  every parameter, BatchNorm on running statistics; accuracy = mean over 10 draws.
- ``inv_alpha_prime`` (1/alpha'^2, "sharpness.mag"): worst case over the box
  |u| <= alpha' |w| + eps, found by projected gradient ascent on the cross-entropy (20 steps,
  3 restarts, lowest accuracy kept), every parameter, BatchNorm on running statistics.
- ``inv_sigma_dprime``, ``inv_alpha_dprime`` (1/sigma''^2, 1/alpha''^2): the same on conv and
  linear kernels only, BatchNorm on batch statistics (its running buffers untouched).

The scale is continuous: for 1/sigma' and 1/sigma'' the search bisects until both ends of its
bracket are within the tolerance of the target drop, then interpolates the crossing between them
(``search = "interpolate"``, :mod:`icc_sharpness.search`); for 1/alpha' and 1/alpha'', whose drop
counts single samples, it bisects all ``max_steps`` midpoints before interpolating (``search =
"resolve"``), so that two networks tie only if their drops cross the target within about 2e-6 of
each other. ``search = "first_within_tolerance"`` gives the dyadic midpoints of icc_sharpness 0.1.
The model is never modified (every perturbation is a functional copy) and a seed gives the same
value on one device. The smallest scale the search can return is its resolution
(search_high - search_low) / 2**(max_steps + 1), so the measure is finite: at most about 1.1e12
with the defaults, for a network that a perturbation of scale ~1e-6 (or the eps floor alone)
already costs 0.1 of training accuracy; the largest scale is search_high, so the measure is at
least 1 / search_high**2 = 0.25.

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020 (sections on sharpness; Appendix C).
Carbonnelle & De Vleeschouwer, "Intraclass clustering: an implicit learning ability that
regularizes DNNs", ICLR 2021, section 3 (the double-primed variants).
"""

from __future__ import annotations

from icc_bench import Measure, MeasureContext, hookimpl
from icc_sharpness.perturb import alpha_prime, sigma_prime
from icc_sharpness.settings import RandomPerturbationSettings, WorstCasePerturbationSettings

__version__ = "0.3.0"


def inverse_sigma_squared(ctx: MeasureContext, settings: RandomPerturbationSettings) -> float:
    """1/sigma^2 at a 0.1 training-accuracy drop under magnitude-aware Gaussian perturbations (higher = sharper)."""
    result = sigma_prime(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())
    return result.inverse_square


def inverse_alpha_squared(ctx: MeasureContext, settings: WorstCasePerturbationSettings) -> float:
    """1/alpha^2 at a 0.1 training-accuracy drop under magnitude-aware worst-case perturbations (higher = sharper)."""
    result = alpha_prime(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, settings, ctx.generator())
    return result.inverse_square


@hookimpl
def icc_bench_register_measures(registry) -> None:
    prime, dprime = "every parameter, BatchNorm on running statistics", "kernels only, BatchNorm on batch statistics"
    for name, fn, settings, description in (
        (
            "inv_sigma_prime",
            inverse_sigma_squared,
            RandomPerturbationSettings(variant="all_params_bn_eval"),
            f"1/sigma'^2, magnitude-aware Gaussian perturbations ({prime}); higher = sharper",
        ),
        (
            "inv_sigma_dprime",
            inverse_sigma_squared,
            RandomPerturbationSettings(variant="kernels_bn_batch_stats"),
            f"1/sigma''^2, magnitude-aware Gaussian perturbations ({dprime}); higher = sharper",
        ),
        (
            "inv_alpha_prime",
            inverse_alpha_squared,
            WorstCasePerturbationSettings(variant="all_params_bn_eval"),
            f"1/alpha'^2, magnitude-aware worst-case perturbations ({prime}); higher = sharper",
        ),
        (
            "inv_alpha_dprime",
            inverse_alpha_squared,
            WorstCasePerturbationSettings(variant="kernels_bn_batch_stats"),
            f"1/alpha''^2, magnitude-aware worst-case perturbations ({dprime}); higher = sharper",
        ),
    ):
        registry.add(
            Measure(
                name=name,
                family="sharpness",
                higher_is_better=False,
                needs_hierarchy=False,
                fn=fn,
                settings=settings,
                description=description,
            )
        )
