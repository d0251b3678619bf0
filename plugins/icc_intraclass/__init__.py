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
from icc_intraclass.kernels import c1_selectivity, c2_silhouette, c3_variance_ratio, c4_distance_spread, subclass_selectivity
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


# -- per-layer forms (``icc-bench analyze layers``, the paper's Figure 5, Section 4.3) ----------------
# Each measure on one probe layer at a time, with the kernels' ``per_layer`` option: c1 and c3 keep
# the top ``neurons_per_layer`` neurons of the layer (the paper: "the top-5 neurons of each layer")
# in place of their ``k``; c2 and c4 are layer-level measures, whose ``k`` (of layers) has no
# meaning inside one layer. Every other setting, the probe sample included, is the measure's own.
def c1_per_layer(ctx: MeasureContext, settings: C1Settings, neurons_per_layer: int) -> list[float]:
    """c1 on each layer alone: its top ``neurons_per_layer`` neurons per subclass."""
    probe = ctx.probe_for(settings.probe_samples)
    options = {**_kernel_options(settings), "k": neurons_per_layer}
    return c1_selectivity(probe.preactivations, probe.fine_labels, ctx.fine_to_coarse, **options, per_layer=True)


def c2_per_layer(ctx: MeasureContext, settings: C2Settings, neurons_per_layer: int) -> list[float]:
    """c2 on each layer alone: the layer's silhouette per subclass, then the aggregate."""
    probe = ctx.probe_for(settings.probe_samples)
    return c2_silhouette(probe.activations, probe.fine_labels, ctx.fine_to_coarse, **_kernel_options(settings), per_layer=True)


def c3_per_layer(ctx: MeasureContext, settings: C3Settings, neurons_per_layer: int) -> list[float]:
    """c3 on each layer alone: its top ``neurons_per_layer`` neurons per class."""
    probe = ctx.probe_for(settings.probe_samples)
    options = {**_kernel_options(settings), "k": neurons_per_layer}
    return c3_variance_ratio(probe.preactivations, probe.labels, **options, per_layer=True)


def c4_per_layer(ctx: MeasureContext, settings: C4Settings, neurons_per_layer: int) -> list[float]:
    """c4 on each layer alone: the layer's spread per class, then the aggregate."""
    probe = ctx.probe_for(settings.probe_samples)
    return c4_distance_spread(probe.preactivations, probe.labels, **_kernel_options(settings), per_layer=True)


def c1_per_neuron(ctx: MeasureContext, settings: C1Settings):
    """``sel(n, i)`` of every subclass i and neuron n on c1's probe sample (``icc-bench analyze
    neurons``, Figures 7 and 11), and that sample: c1 at k = 1 is the median of the rows' maxima."""
    probe = ctx.probe_for(settings.probe_samples)
    return subclass_selectivity(probe.preactivations, probe.fine_labels, ctx.fine_to_coarse), probe


@hookimpl
def icc_bench_register_measures(registry) -> None:
    registry.add(Measure(name="c1", family=FAMILY, higher_is_better=True, needs_hierarchy=True, fn=c1, settings=C1Settings(),
                         per_layer=c1_per_layer, per_neuron=c1_per_neuron))
    registry.add(Measure(name="c2", family=FAMILY, higher_is_better=True, needs_hierarchy=True, fn=c2, settings=C2Settings(),
                         per_layer=c2_per_layer))
    registry.add(Measure(name="c3", family=FAMILY, higher_is_better=True, needs_hierarchy=False, fn=c3, settings=C3Settings(),
                         per_layer=c3_per_layer))
    registry.add(Measure(name="c4", family=FAMILY, higher_is_better=True, needs_hierarchy=False, fn=c4, settings=C4Settings(),
                         per_layer=c4_per_layer))
