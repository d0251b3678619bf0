"""The measures layer by layer, averaged over the models of one depth (paper Figure 5, Section 4.3).

For every model of the chosen depth factor, each measure is computed on each probe layer alone by
its per-layer form (:attr:`icc_bench.measure.Measure.per_layer`), which the plugin that registers
the measure provides: icc_intraclass gives c1-c4 one (c1 and c3 keep the top
``neurons_per_layer`` neurons of each layer, as the paper's "top-5 neurons of each layer"; c2 and
c4 are layer-level), and any plugin may give its own measures one. A measure without it has no
place in this analysis. Every setting is the measure's own (the zoo's ``[measure_settings]``
applied), including its probe sample. The values are then averaged over models, layer by layer; models of one depth share
their number of layers (the width changes only the neurons per layer). The paper reads two trends:
all four measures grow with depth, and the variance-based c3 and c4 drop at the penultimate layer.

The per-layer values are not measure values in the store's sense (a list per model, not a float);
the CSVs are their record, and recomputing them is cheap: the representations are cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from icc_bench.analyze import AnalysisError, Progress, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from icc_bench.measure import Measure
    from icc_bench.representations_cache import RepresentationsCache
    from icc_bench.zoo import Zoo


@dataclass
class LayerProfile:
    """Per-layer values of the measures on the models of one depth.

    Attributes
    ----------
    depth : float
        The depth factor of the models.
    neurons_per_layer : int
        Neurons kept per layer by a measure that keeps its top neurons (c1, c3).
    per_model : DataFrame
        One row per (model, measure, layer): ``model_id``, ``measure``, ``layer_index`` (1 = first
        probe layer), ``layer_name``, ``relative_depth`` (layer_index / number of layers),
        ``n_neurons`` (of that layer in that model) and ``value`` (NaN where undefined, e.g. a c4
        layer whose neurons are all dead).
    mean : DataFrame
        One row per (measure, layer): ``measure``, ``layer_index``, ``layer_name``,
        ``relative_depth``, ``mean`` and ``std`` (population std) over the models with a value,
        and ``n_models``.
    not_applicable : dict
        Measure name -> why it was left out (e.g. c1, c2 on a dataset without a hierarchy).
    errors : list of (str, str, str)
        ``(model_id, measure, message)`` of each per-layer computation that raised; that model is
        left out of that measure's mean, as a failed value is left out of a leaderboard.
    """

    depth: float
    neurons_per_layer: int
    per_model: pd.DataFrame
    mean: pd.DataFrame
    not_applicable: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)


def layer_profile(
    zoo: Zoo,
    measures: Sequence[Measure],
    depth: float = 1.0,
    *,
    neurons_per_layer: int = 5,
    cache: RepresentationsCache,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> LayerProfile:
    """``measures`` per layer on every model of depth factor ``depth``, and their mean over those models.

    Raises
    ------
    AnalysisError
        No model has that depth, a measure has no per-layer form, or the models of that depth do
        not share their number of probe layers (there is no layer-by-layer mean then).
    """
    from icc_bench.representations_cache import Checkpoint, open_context

    unknown = [m.name for m in measures if m.per_layer is None]
    if unknown:
        raise AnalysisError(
            f"measure {unknown[0]!r} has no per-layer form (Measure.per_layer, given by the plugin that registers it); "
            "the layer analysis covers the measures that have one: leave --measures out to take them all"
        )
    if neurons_per_layer < 1:
        raise AnalysisError(f"--neurons-per-layer {neurons_per_layer}: must be at least 1 (paper: 5)")
    records = list(zoo.records())
    chosen = [r for r in records if math.isclose(r["hyperparams"]["depth"], depth)]
    if not chosen:
        depths = sorted({r["hyperparams"]["depth"] for r in records})
        raise AnalysisError(f"{zoo.root}: no model has depth factor {depth:g}; its models have {', '.join(f'{d:g}' for d in depths)}: pass one with --depth")
    rows, not_applicable, errors, layer_counts = [], {}, [], {}
    if progress is not None:
        progress.start(len(chosen), description=f"models of depth {depth:g}")
    for record in chosen:
        ctx = open_context(zoo, Checkpoint.final(record), cache=cache, device=device, data_dir=data_dir, seed=seed)
        for measure in measures:
            reason = measure.applicability_reason(ctx)
            if reason is not None:
                not_applicable[measure.name] = reason
                continue
            # Layer names and sizes, from the measure's probe when it names one (already computed).
            representations = ctx.representations_for(getattr(measure.settings, "probe_samples", ctx.probe_samples))
            try:
                values = measure.per_layer(ctx, measure.settings, neurons_per_layer)
            except ValueError as e:  # the kernels' answer for an undefined case (e.g. every neuron dead)
                errors.append((record["model_id"], measure.name, str(e)))
                continue
            n_layers = len(values)
            layer_counts[record["model_id"]] = n_layers
            for index, (name, value, layer) in enumerate(zip(representations.layer_names, values, representations.preactivations), start=1):
                rows.append({
                    "model_id": record["model_id"], "measure": measure.name, "layer_index": index, "layer_name": name,
                    "relative_depth": index / n_layers, "n_neurons": int(layer.shape[1]), "value": float(value),
                })
        del ctx
        if progress is not None:
            progress.advance(record["model_id"])
    if len(set(layer_counts.values())) > 1:
        counts = ", ".join(f"{n} in {m}" for m, n in list(layer_counts.items())[:3])
        raise AnalysisError(
            f"{zoo.root}: the models of depth factor {depth:g} have different numbers of probe layers ({counts}, ...); "
            "a layer-by-layer mean needs one architecture depth"
        )
    columns = ["model_id", "measure", "layer_index", "layer_name", "relative_depth", "n_neurons", "value"]
    per_model = pd.DataFrame(rows, columns=columns)
    # Population std over the models with a value; NaN where no model has one.
    mean = (
        per_model.groupby(["measure", "layer_index", "layer_name", "relative_depth"], sort=False)["value"]
        .agg(mean="mean", std=lambda v: v.std(ddof=0), n_models="count")
        .reset_index()
    )
    return LayerProfile(depth, neurons_per_layer, per_model, mean, not_applicable, errors)


def layers_figure(profile: LayerProfile, *, title: str) -> Figure:
    """One panel per measure: its mean over models (band: +- one std) against the layer index."""
    names = list(dict.fromkeys(profile.mean["measure"]))
    fig = new_figure(2.6 * max(len(names), 1) + 0.4, 2.8)
    if not names:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no measure applies to these models", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    n_models = profile.per_model["model_id"].nunique()
    for ax, name in zip(axes, names):
        rows = profile.mean[profile.mean["measure"] == name]
        ax.plot(rows["layer_index"], rows["mean"], marker="o", ms=3)
        ax.fill_between(rows["layer_index"], rows["mean"] - rows["std"], rows["mean"] + rows["std"], alpha=0.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("layer (1 = first)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean over {n_models} models")
    fig.suptitle(
        f"{title}: per-layer measures, depth factor {profile.depth:g} "
        f"(neuron-level measures: top {profile.neurons_per_layer} neurons of each layer)", fontsize=9,
    )
    return fig
