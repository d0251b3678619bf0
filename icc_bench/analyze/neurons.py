"""Subclass extraction in single neurons, for one model (paper Figures 7 and 11, Section 4.5).

c1 scores how well single neurons single out a subclass from the rest of its superclass
(SPEC §2): ``sel(n, i) = (mu_{n,C_i} - mu_{n,S(i)\\C_i}) / (sigma_{n,C_i} + sigma_{n,S(i)\\C_i} + eps)``
on the pre-activations of the probe sample. For one model this analysis

1. computes ``sel(n, i)`` for every neuron and subclass on the final checkpoint, takes each
   subclass's most selective neuron (k = 1) and ranks the subclasses by that best selectivity
   (Figure 11 is the histogram of these values; their median is c1 at k = 1);
2. follows the most selective neuron of the top subclass and of the median subclass through the
   snapshots saved during training: at each epoch, the histograms of the neuron's pre-activation
   on the subclass and on the rest of its superclass (Figure 7). The paper sees the top subclass
   ('Rocket') progressively separated from its superclass, and the median one ('Ray') less so.

The median subclass is the one ranked ``(n + 1) // 2`` of ``n`` (for an even ``n``, the upper of
the two middle ones). A model without snapshots gives the final epoch alone. The scores come from
the measure's per-neuron form (:attr:`icc_bench.measure.Measure.per_neuron`), which the plugin
provides (icc_intraclass: c1's ``sel(n, i)`` on c1's probe sample), so the numbers are those behind
the measure's value; this module imports no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from icc_bench.analyze import AnalysisError, find_records, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor

    from icc_bench.measure import Measure, ProbeSample
    from icc_bench.representations_cache import CachedMeasureContext, RepresentationsCache
    from icc_bench.zoo import Zoo

@dataclass
class NeuronAnalysis:
    """What the two figures show.

    Attributes
    ----------
    model_id : str
    test_accuracy : float
        The model's final test accuracy.
    ranking : DataFrame
        One row per subclass with a defined selectivity, best first: ``rank`` (1 = most
        selective), ``subclass``, ``superclass``, ``superclass_name``, ``selectivity`` (of its
        best neuron, unbounded, higher = better singled out), ``neuron`` (index among all
        neurons, layers concatenated), ``layer_name``, ``neuron_in_layer`` and ``role``
        (``top``, ``median`` or empty).
    preactivations : DataFrame
        One row per (role, epoch, probe sample of the subclass's superclass): ``role``,
        ``subclass``, ``neuron``, ``epoch``, ``sample`` (index in the training set), ``group``
        (``subclass`` or ``rest of superclass``), ``preactivation`` and ``selectivity`` (the
        neuron's sel for that subclass at that epoch).
    epochs : list of int
        The epochs shown, the last being the final checkpoint.
    """

    model_id: str
    test_accuracy: float
    ranking: pd.DataFrame
    preactivations: pd.DataFrame
    epochs: list[int]
    measure: str = ""  # the measure whose per-neuron scores these are


def rank_subclasses(
    selectivity: Tensor, layer_names: list[str], layer_sizes: list[int], fine_to_coarse: Tensor, class_names: list[str] | None
) -> pd.DataFrame:
    """Subclasses ranked by the selectivity of their most selective neuron (see :class:`NeuronAnalysis`).

    Parameters
    ----------
    selectivity : Tensor of shape (n_subclasses, n_neurons)
        ``sel(n, i)`` as :func:`icc_intraclass.kernels.subclass_selectivity` returns it; NaN rows
        (undefined subclasses) are left out.
    layer_names, layer_sizes
        Name and neuron count of each layer, in column order.
    fine_to_coarse : Tensor of shape (n_subclasses,)
    class_names : list of str or None
        Superclass names.
    """
    sel = selectivity.detach().cpu().double()
    defined = ~sel[:, 0].isnan()
    if not bool(defined.any()):
        raise AnalysisError("no subclass has samples both in it and in the rest of its superclass; the probe sample is too small to rank subclasses")
    best_value, best_neuron = sel[defined].max(dim=1)
    subclasses = defined.nonzero().squeeze(1)
    starts = np.cumsum([0, *layer_sizes])
    rows = []
    for subclass, value, neuron in zip(subclasses.tolist(), best_value.tolist(), best_neuron.tolist()):
        layer = int(np.searchsorted(starts, neuron, side="right")) - 1
        superclass = int(fine_to_coarse[subclass])
        rows.append({
            "subclass": subclass, "superclass": superclass,
            "superclass_name": class_names[superclass] if class_names else str(superclass),
            "selectivity": value, "neuron": neuron, "layer_name": layer_names[layer], "neuron_in_layer": neuron - int(starts[layer]),
        })
    # Ties (equal selectivities) ordered by subclass, so the ranking does not depend on the sort.
    ranking = pd.DataFrame(rows).sort_values(["selectivity", "subclass"], ascending=[False, True], kind="stable").reset_index(drop=True)
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    ranking["role"] = ""
    ranking.loc[median_position(len(ranking)), "role"] = "median"
    ranking.loc[0, "role"] = "top"  # a single subclass is both; the column calls it top
    return ranking


def median_position(n: int) -> int:
    """0-based position of the median among ``n`` values ranked best first (upper middle for even n)."""
    return (n + 1) // 2 - 1


def _selectivity(ctx: CachedMeasureContext, measure: Measure) -> tuple[Tensor, ProbeSample]:
    """The measure's per-neuron scores (``sel(n, i)`` for c1) of every subclass and neuron, and the probe sample."""
    return measure.per_neuron(ctx, measure.settings)


def neuron_analysis(
    zoo: Zoo,
    model_id: str,
    measure: Measure,
    *,
    cache: RepresentationsCache,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
) -> NeuronAnalysis:
    """Rank the subclasses of one model and follow the top and median subclasses' neurons over epochs.

    ``measure`` is one with a per-neuron form (:attr:`icc_bench.measure.Measure.per_neuron`):
    c1, whose form icc_intraclass provides, or any plugin's.

    Raises
    ------
    AnalysisError
        Unknown model id, a model trained on a dataset without a label hierarchy, or a measure
        without a per-neuron form.
    """
    if measure.per_neuron is None:
        raise AnalysisError(f"measure {measure.name!r} has no per-neuron form (Measure.per_neuron); the neurons analysis needs one")
    from icc_bench.analyze.dynamics import training_checkpoints
    from icc_bench.representations_cache import open_context

    (record,) = find_records(zoo, [model_id])
    if record.get("hierarchical") is False:
        raise AnalysisError(_flat_message(record))
    points = training_checkpoints(zoo, record, require_snapshots=False)
    final = open_context(zoo, points[-1][1], cache=cache, device=device, data_dir=data_dir, seed=seed)
    if final.fine_to_coarse is None:
        raise AnalysisError(_flat_message(record))
    selectivity, probe = _selectivity(final, measure)
    layers = probe.representations
    ranking = rank_subclasses(
        selectivity, layers.layer_names, [p.shape[1] for p in layers.preactivations], final.fine_to_coarse.cpu(),
        final.dataset.class_names,
    )
    followed = {"top": ranking.iloc[0], "median": ranking.iloc[median_position(len(ranking))]}
    fine = probe.fine_labels.cpu().numpy()
    coarse = final.fine_to_coarse.cpu().numpy()[fine]
    indices = probe.indices.cpu().numpy()
    layer_of = {name: i for i, name in enumerate(layers.layer_names)}
    frames = []
    for epoch, checkpoint in points:
        ctx = final if checkpoint == points[-1][1] else open_context(zoo, checkpoint, cache=cache, device=device, data_dir=data_dir, seed=seed)
        epoch_selectivity, epoch_probe = _selectivity(ctx, measure)
        for role, chosen in followed.items():
            subclass, superclass = int(chosen["subclass"]), int(chosen["superclass"])
            layer = epoch_probe.preactivations[layer_of[chosen["layer_name"]]]  # (n_probe, n_neurons_l)
            members = coarse == superclass  # the samples of S(i), the subclass's superclass
            frames.append(pd.DataFrame({
                "role": role, "subclass": subclass, "neuron": int(chosen["neuron"]), "epoch": epoch,
                "sample": indices[members],
                "group": np.where(fine[members] == subclass, "subclass", "rest of superclass"),
                "preactivation": layer[:, int(chosen["neuron_in_layer"])].cpu().numpy()[members].astype(np.float64),
                "selectivity": float(epoch_selectivity[subclass, int(chosen["neuron"])]),
            }))
    return NeuronAnalysis(model_id, float(record["test_accuracy"]), ranking, pd.concat(frames, ignore_index=True), [e for e, _ in points], measure.name)


def _flat_message(record: dict) -> str:
    return (
        f"model '{record['model_id']}' was trained on dataset '{record['dataset']['name']}', which has no label "
        "hierarchy; the neurons analysis ranks subclasses inside their superclass, so it needs a hierarchical "
        "dataset such as cifar100_coarse or synthetic_hierarchy"
    )


def preactivations_figure(result: NeuronAnalysis) -> Figure:
    """Figure 7: per followed subclass (rows) and epoch (columns), the neuron's pre-activation
    histograms on the subclass and on the rest of its superclass (densities, shared bins)."""
    roles = list(dict.fromkeys(result.preactivations["role"]))
    fig = new_figure(max(2.2 * len(result.epochs) + 0.6, 5.0), 2.0 * len(roles) + 0.8)
    axes = fig.subplots(len(roles), len(result.epochs), squeeze=False)
    ranking = result.ranking.set_index("subclass")
    for r, role in enumerate(roles):
        for c, epoch in enumerate(result.epochs):
            ax = axes[r][c]
            rows = result.preactivations[(result.preactivations["role"] == role) & (result.preactivations["epoch"] == epoch)]
            edges = np.histogram_bin_edges(rows["preactivation"], bins=min(30, max(5, len(rows) // 4)))
            for group, colour in (("rest of superclass", "0.6"), ("subclass", "C3")):
                ax.hist(rows.loc[rows["group"] == group, "preactivation"], bins=edges, density=True, alpha=0.6, color=colour, label=group)
            ax.set_title(f"epoch {epoch}: sel {rows['selectivity'].iloc[0]:.2f}", fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                chosen = ranking.loc[int(rows["subclass"].iloc[0])]
                ax.set_ylabel(f"{role}: subclass {int(rows['subclass'].iloc[0])}\n{chosen['layer_name']}[{chosen['neuron_in_layer']}]", fontsize=8)
    axes[-1][-1].legend(fontsize=7)
    fig.supxlabel("pre-activation of the subclass's most selective neuron", fontsize=8)
    fig.suptitle(
        f"{result.model_id} (test {result.test_accuracy:.1%})\nthe top and the median subclass: "
        "its most selective neuron over training", fontsize=9,
    )
    return fig


def selectivity_figure(result: NeuronAnalysis) -> Figure:
    """Figure 11: the histogram of per-subclass best selectivity, its median (the measure at k = 1: c1's) and mean marked."""
    values = result.ranking["selectivity"].to_numpy()
    fig = new_figure(4.2, 3.0)
    ax = fig.add_subplot()
    ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="C0", alpha=0.8)
    ax.axvline(np.median(values), color="C3", label=f"median {np.median(values):.2f} ({result.measure} at k = 1)")
    ax.axvline(values.mean(), color="C1", ls="--", label=f"mean {values.mean():.2f}")
    ax.set_xlabel("subclass selectivity of the best neuron")
    ax.set_ylabel("number of subclasses")
    ax.legend(fontsize=7)
    ax.set_title(f"{result.model_id}: {len(values)} subclasses", fontsize=8)
    return fig


def print_summary(result: NeuronAnalysis, console) -> None:
    ranking = result.ranking
    for role, row in (("top", ranking.iloc[0]), ("median", ranking.iloc[median_position(len(ranking))])):
        console.print(
            f"{role} subclass: {int(row['subclass'])} of superclass {row['superclass_name']} "
            f"(rank {int(row['rank'])}/{len(ranking)}), selectivity {row['selectivity']:.3f} "
            f"at neuron {row['layer_name']}[{int(row['neuron_in_layer'])}]",
            highlight=False, soft_wrap=True,
        )
