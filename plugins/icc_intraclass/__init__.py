"""Intraclass clustering measures c1-c4 (Carbonnelle & De Vleeschouwer, ICLR 2021).

Reference: S. Carbonnelle and C. De Vleeschouwer, "Intraclass clustering: an implicit learning
ability that regularizes DNNs", ICLR 2021, §2. What each number is: SPEC §1-2.

- ``c1``: neuron-level subclass selectivity (needs a label hierarchy; pre-activations).
- ``c2``: layer-level silhouette of the subclasses (needs a label hierarchy; activations).
- ``c3``: neuron-level variance ratio sigma_{n,C_i} / sigma_{n,D} (any labels; pre-activations).
- ``c4``: layer-level spread of cosine distances (any labels; standardized activations).

All four: higher = the network has found more intraclass structure = predicts better
generalization. The numeric kernels live in :mod:`icc_intraclass.kernels` and take tensors and
labels only; the functions below only read the probe from the context and pass the settings on.
This package registers itself through the ``icc_bench`` entry-point group, exactly as a
third-party plugin would.
"""

from __future__ import annotations

from icc_bench import Measure, MeasureContext, hookimpl
from icc_intraclass.kernels import c1_selectivity, c2_silhouette, c3_variance_ratio, c4_distance_spread
from icc_intraclass.settings import C1Settings, C2Settings, C3Settings, C4Settings

__version__ = "0.1.0"

FAMILY = "intraclass clustering"


def _kernel_options(settings) -> dict:
    return settings.model_dump(exclude={"probe_samples"})


def c1(ctx: MeasureContext, settings: C1Settings) -> float:
    """Neuron-level subclass selectivity: median over subclasses of the top-k neurons' selectivity."""
    probe = ctx.probe_for(settings.probe_samples)
    return c1_selectivity(probe.preactivations, probe.fine_labels, ctx.fine_to_coarse, **_kernel_options(settings))


def c2(ctx: MeasureContext, settings: C2Settings) -> float:
    """Layer-level silhouette: median over subclasses of the top-k layers' silhouette within the superclass."""
    probe = ctx.probe_for(settings.probe_samples)
    return c2_silhouette(probe.activations, probe.fine_labels, ctx.fine_to_coarse, **_kernel_options(settings))


def c3(ctx: MeasureContext, settings: C3Settings) -> float:
    """Neuron-level variance ratio: mean over classes of the top-k neurons' sigma_class / sigma_all."""
    probe = ctx.probe_for(settings.probe_samples)
    return c3_variance_ratio(probe.preactivations, probe.labels, **_kernel_options(settings))


def c4(ctx: MeasureContext, settings: C4Settings) -> float:
    """Layer-level spread of cosine distances: mean over classes of the top-k layers' Sigma_class / Sigma_all."""
    probe = ctx.probe_for(settings.probe_samples)
    return c4_distance_spread(probe.preactivations, probe.labels, **_kernel_options(settings))


@hookimpl
def icc_bench_register_measures(registry) -> None:
    registry.add(Measure(name="c1", family=FAMILY, higher_is_better=True, needs_hierarchy=True, fn=c1, settings=C1Settings()))
    registry.add(Measure(name="c2", family=FAMILY, higher_is_better=True, needs_hierarchy=True, fn=c2, settings=C2Settings()))
    registry.add(Measure(name="c3", family=FAMILY, higher_is_better=True, needs_hierarchy=False, fn=c3, settings=C3Settings()))
    registry.add(Measure(name="c4", family=FAMILY, higher_is_better=True, needs_hierarchy=False, fn=c4, settings=C4Settings()))
