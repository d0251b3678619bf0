"""How a measure's predictive power depends on its k: granulated Kendall against k (paper Figure 4).

c1 and c3 average the ``k`` most selective (c1) or most variable (c3) neurons; c2 and c4 the ``k``
best layers (SPEC §2). The paper fixes k = 30 for the neuron-level measures "quite arbitrarily" and
then shows (Section 4.2, Figure 4) that the Kendall coefficient changes little with k, and that a
single neuron per class already predicts generalization well. This sweep computes, for every
measure whose settings have a ``k`` field and every k asked for, the measure on every model of the
zoo, then its granulated Kendall total Psi (SPEC §5) exactly as the leaderboard scores it.

Each (model, measure, k) value is stored in the results store as the measure with settings
``k`` (:meth:`~icc_bench.measure.Measure.with_settings`), so its settings hash is its key: at the
measure's default k it *is* the leaderboard's row (whichever of the two computed it first), and a
second sweep recomputes nothing. Representations come from the on-disk cache: one forward pass
per model over all k, none at all on a later sweep with new values of k.

The paper's plot multiplies c1's k by 5 (the subclasses per CIFAR-100 superclass) to compare it
with c3 at the same number of neurons per class; this one plots each measure at its own k.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from icc_bench.analyze import DEFAULT_KS, AnalysisError, Progress, compute_values, new_figure
from icc_bench.config import AXES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from icc_bench.measure import Measure
    from icc_bench.representations_cache import RepresentationsCache
    from icc_bench.zoo import Zoo

__all__ = ["DEFAULT_KS", "k_sweep", "k_sweep_figure", "print_summary", "sweep_variants"]


def sweep_variants(measures: Sequence[Measure], ks: Sequence[int]) -> list[tuple[Measure, int, Measure]]:
    """``(measure, k, measure with settings k)`` for every measure and every k, its default k included.

    Raises
    ------
    AnalysisError
        A measure whose settings have no ``k`` field (there is nothing to sweep).
    """
    variants = []
    for measure in measures:
        fields = type(measure.settings).model_fields
        if "k" not in fields:
            raise AnalysisError(
                f"measure {measure.name!r} has no setting 'k' (its settings: {', '.join(fields) or 'none'}); "
                "sweep measures with a k, e.g. --measures c1,c3"
            )
        for k in sorted(set(ks) | {measure.settings.k}):
            variants.append((measure, k, measure.with_settings(k=k)))
    return variants


def k_sweep(
    zoo: Zoo,
    measures: Sequence[Measure],
    ks: Sequence[int],
    *,
    target: str = "test_accuracy",
    kendall: str = "tau_a",
    cache: RepresentationsCache,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The granulated Kendall of every measure at every k, on every model of ``zoo``.

    Parameters
    ----------
    zoo : Zoo
    measures : sequence of Measure
        Each with a ``k`` setting; its current settings are the defaults the sweep departs from.
    ks : sequence of int
        Values of k (>= 1); each measure's own k is added.
    target, kendall
        As for ``icc-bench leaderboard``: what generalization is and which Kendall variant.
    cache, device, data_dir, seed
        Where representations are cached, where the models run, where CIFAR lives, the probe seed.

    Returns
    -------
    DataFrame
        One row per (measure, k): ``measure``, ``k``, ``default_k`` (True at the measure's own k),
        ``total`` (Psi, in [-1, 1], positive = ranks the models the right way round), ``psi_<axis>``
        for the eight axes, ``cmi``, ``n_models`` (with a value), ``n_errors``, ``not_applicable``
        (the reason, or empty) and ``settings_hash`` (the results-store key of the variant).
    """
    from icc_bench.scores import score_zoo
    from icc_bench.uncertainty import BootstrapSettings
    from icc_bench.representations_cache import Checkpoint

    variants = sweep_variants(measures, ks)
    checkpoints = [Checkpoint.final(record) for record in zoo.records()]
    compute_values(
        zoo, [(checkpoint, [v for _, _, v in variants]) for checkpoint in checkpoints], cache=cache, device=device,
        data_dir=data_dir, seed=seed, progress=progress,
    )
    rows = []
    for measure, k, variant in variants:
        # The leaderboard's own scoring of this variant, so that the default k is its number exactly.
        row = score_zoo(zoo, [variant], target=target, kendall=kendall, seed=seed, bootstrap=BootstrapSettings(draws=0), references=False).rows[0]
        rows.append({
            "measure": measure.name, "k": k, "default_k": k == measure.settings.k, "total": row.total,
            **{f"psi_{axis}": row.per_axis.get(axis, np.nan) for axis in AXES},
            "cmi": row.cmi, "n_models": row.n_models, "n_errors": len(row.errors),
            "not_applicable": row.not_applicable or "", "settings_hash": variant.settings_hash,
        })
    return pd.DataFrame(rows)


def k_sweep_figure(frame: pd.DataFrame, *, title: str, target: str = "test_accuracy", kendall: str = "tau_a") -> Figure:
    """Psi against k (log scale), one line per measure; the measure's default k is ringed."""
    fig = new_figure(5.0, 3.4)
    ax = fig.add_subplot()
    for name, rows in frame.groupby("measure", sort=False):
        if rows["not_applicable"].astype(bool).all():
            ax.plot([], [], label=f"{name} (not applicable)")
            continue
        (line,) = ax.plot(rows["k"], rows["total"], marker="o", ms=4, label=name)
        default = rows[rows["default_k"]]
        ax.plot(default["k"], default["total"], "o", ms=10, mfc="none", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("k (c1, c3: neurons; c2, c4: layers)")
    ax.set_ylabel(f"granulated Kendall Ψ ({kendall})")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{title}: Ψ against k, target {target}; ring = default k", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def print_summary(frame: pd.DataFrame, console) -> None:
    """Psi per measure (rows) and k (columns), the default k marked with ``*``."""
    from rich.table import Table

    table = Table(title="granulated Kendall Ψ against k (* = default k)", title_justify="left")
    ks = sorted(frame["k"].unique())
    table.add_column("measure")
    for k in ks:
        table.add_column(str(k), justify="right")
    for name, rows in frame.groupby("measure", sort=False):
        by_k = {int(r.k): r for r in rows.itertuples()}
        cells = []
        for k in ks:
            r = by_k.get(int(k))
            cells.append("" if r is None else ("–" if not np.isfinite(r.total) else f"{r.total:.2f}") + ("*" if r.default_k else ""))
        table.add_row(name, *cells)
    console.print(table)
