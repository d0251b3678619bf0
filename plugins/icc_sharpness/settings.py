"""Settings of the sharpness measures (SPEC §3): one frozen model per kind of perturbation.

Every knob where published implementations of Jiang et al. (2020) disagree is a field here, with
the SPEC's default. The two perturbation variants of the paper are the ``variant`` field; each
registered measure carries its own (``inv_sigma_prime`` / ``inv_alpha_prime``:
``"all_params_bn_eval"``, ``inv_sigma_dprime`` / ``inv_alpha_dprime``: ``"kernels_bn_batch_stats"``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from icc_sharpness.search import SearchRule

#: ``"all_params_bn_eval"``: perturb every parameter (kernels, biases, BatchNorm affine weights) and
#: evaluate with BatchNorm on its running statistics (the primed measures, 1/sigma' and 1/alpha').
#: ``"kernels_bn_batch_stats"``: perturb conv and linear kernels only (parameters with ndim > 1)
#: and evaluate with BatchNorm on each evaluation batch's own statistics, running buffers untouched
#: (the double-primed measures, 1/sigma'' and 1/alpha''). Dropout is off in both.
Variant = Literal["all_params_bn_eval", "kernels_bn_batch_stats"]


class SharpnessSearchSettings(BaseModel):
    """What both perturbation searches share: the target, the sample, the bisection, the variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: Variant = Field(
        "all_params_bn_eval", description="which parameters are perturbed and how BatchNorm normalises (see Variant)"
    )
    target_deviation: float = Field(
        0.1, gt=0, lt=1, description="the training-accuracy drop (absolute, in [0, 1]) the search aims for"
    )
    search: SearchRule = Field(
        "interpolate",
        description=(
            "'interpolate': bisect until both ends of the bracket have |drop - target_deviation| <= tolerance (or "
            "max_steps), then answer where the chord between them crosses the target (continuous values); "
            "'resolve': the same after all max_steps midpoints (distinct values; 1.5x the evaluations of 1/alpha' on quick); "
            "'first_within_tolerance': answer the first midpoint within tolerance (dyadic values, icc_sharpness 0.1). "
            "See icc_sharpness.search"
        ),
    )
    tolerance: float = Field(
        1e-2, gt=0, description="half-width of the band around target_deviation that ends the search (see search)"
    )
    sharpness_samples: int | None = Field(
        5000,
        gt=0,
        description="training samples in the fixed seeded subset the accuracy is measured on; None or more than N = all",
    )
    search_low: float = Field(0.0, ge=0, description="lower end of the bisection interval for sigma' or alpha'")
    search_high: float = Field(2.0, gt=0, description="upper end of the bisection interval")
    max_steps: int = Field(
        20, gt=0, description="bisection midpoints at most; the answer then comes from the final bracket (see search)"
    )
    eps: float = Field(1e-3, ge=0, description="additive floor of the perturbation scale, so that zero weights are perturbed too")
    batch_size: int = Field(
        128,
        gt=1,
        description=(
            "samples per forward pass of one perturbed network; the subset is cut into ceil(n / batch_size) "
            "nearly equal consecutive chunks, which are also the BatchNorm batches of the batch-statistics variant "
            "and the minibatches of the gradient ascent"
        ),
    )

    @model_validator(mode="after")
    def _interval_and_tolerance(self) -> SharpnessSearchSettings:
        if self.search_high <= self.search_low:
            raise ValueError(f"search_high ({self.search_high}) must be greater than search_low ({self.search_low})")
        if self.tolerance >= self.target_deviation:
            raise ValueError(
                f"tolerance ({self.tolerance}) must be smaller than target_deviation ({self.target_deviation}), "
                "or a zero drop would count as on target"
            )
        return self


class RandomPerturbationSettings(SharpnessSearchSettings):
    """1/sigma' and 1/sigma'' ("pacbayes.mag"): Gaussian perturbations u ~ N(0, sigma'^2 w^2 + eps^2)."""

    mc_samples: int = Field(
        10, gt=0, description="Monte Carlo draws per sigma; the accuracy is their mean (the same draws at every sigma)"
    )


class WorstCasePerturbationSettings(SharpnessSearchSettings):
    """1/alpha' and 1/alpha'' ("sharpness.mag"): projected gradient ascent in |u| <= alpha' |w| + eps."""

    search: SearchRule = Field(
        "resolve",
        description=(
            "as for every sharpness search (see SharpnessSearchSettings), but 'resolve' by default: the worst case's "
            "drop counts single samples (steps of 1 / n: the minimum over restarts), so 'interpolate' ties networks "
            "whose tight brackets and end counts agree (quick: 2 of 10 models under 1/alpha'); the random measures "
            "average their draws (steps of 1 / (n K)) and keep 'interpolate', where 'resolve' would cost 2.6x for no "
            "fewer ties"
        ),
    )
    ascent_steps: int = Field(20, gt=0, description="projected sign-gradient ascent steps per restart")
    restarts: int = Field(3, gt=0, description="uniform random starts in the box; the lowest accuracy is kept")
    step_fraction: float = Field(
        0.5,
        gt=0,
        description=(
            "ascent step per element as a fraction of the box half-width alpha' |w| + eps. Sign-gradient steps of "
            "half the half-width let an element cross the box in 4 steps and the ascent converge within 20; on the "
            "test network 0.1 left the worst case short (drop 0.08 where 0.5 found 0.20) and steps up to 2 (a jump to "
            "a corner each step) found within 0.01 of 0.5"
        ),
    )
