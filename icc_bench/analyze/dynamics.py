"""The measures over the course of training, for chosen models (paper Figure 6, Section 4.4).

A model trained from a spec whose ``[schedule] save_epochs`` lists epochs keeps a snapshot of its
weights after each of them (``models/<model_id>@<epoch>.safetensors``, hash in the record). Each
snapshot is measured like a finished model, on the same probe sample, and its values are stored in
the results store under ``<model_id>@<epoch>`` with the snapshot's hash; the last point is the final
checkpoint, whose values are the leaderboard's own rows. The training accuracy of every epoch comes
from the record's curve (running accuracy of the epoch, train mode, as frameworks report it).

The paper reads two things here: models that generalize well and badly differ mostly early in
training, and the measures rise when the training accuracy rises (first epochs, learning-rate drops).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from icc_bench.analyze import AnalysisError, Progress, compute_values, find_records, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from icc_bench.measure import Measure
    from icc_bench.representations_cache import Checkpoint, RepresentationsCache
    from icc_bench.zoo import Zoo

#: The curve's columns shown beside the measures.
CURVE_QUANTITIES = ("train_accuracy", "test_accuracy")


def training_checkpoints(zoo: Zoo, record: dict, *, require_snapshots: bool = True) -> list[tuple[int, Checkpoint]]:
    """``(epoch, checkpoint)`` of a model's snapshots and of its final weights, by epoch.

    A snapshot taken after the last epoch run holds the final weights and is left out for the
    final checkpoint (the leaderboard's).

    Raises
    ------
    AnalysisError
        With ``require_snapshots``, when the model has no snapshot (trained without ``save_epochs``).
    """
    from icc_bench.representations_cache import Checkpoint

    # The epoch-0 snapshot (the initialization, kept for every model since distance from
    # initialization needs it) is not a point of the training dynamics the spec asked for.
    snapshots = [c for c in Checkpoint.snapshots(record) if c.epoch != 0]
    if not snapshots and require_snapshots:
        raise AnalysisError(
            f"{zoo.record_path(record['model_id'])}: model '{record['model_id']}' has no checkpoint saved during training "
            "(its schedule's save_epochs is empty); retrain it from a spec with e.g. save_epochs = [1, 5, 20] under [schedule]"
        )
    last = int(record["epochs_run"])
    return [(c.epoch, c) for c in snapshots if c.epoch != last] + [(last, Checkpoint.final(record))]


def dynamics(
    zoo: Zoo,
    model_ids: Sequence[str],
    measures: Sequence[Measure],
    *,
    cache: RepresentationsCache,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The measures at each saved epoch, and the accuracy curve, of the models ``model_ids``.

    Returns
    -------
    DataFrame
        Long format, one row per (model, epoch, quantity): ``model_id``, ``epoch``, ``quantity``
        (a measure name, or ``train_accuracy`` / ``test_accuracy`` from the curve, every epoch),
        ``value`` (NaN unless ``status`` is ``ok``), ``status`` (``ok``, ``error``,
        ``not_applicable``), ``checkpoint`` (the store's model id of a measured checkpoint, empty
        for curve rows) and ``final_test_accuracy``.
    """
    from icc_bench.store import result_key, store_for

    if not model_ids:
        raise AnalysisError("--models: name at least one model id")
    records = find_records(zoo, list(dict.fromkeys(model_ids)))
    schedule = {r["model_id"]: training_checkpoints(zoo, r) for r in records}  # all checked before any work
    compute_values(
        zoo, [(c, measures) for points in schedule.values() for _, c in points], cache=cache, device=device,
        data_dir=data_dir, seed=seed, progress=progress,
    )
    rows = []
    with store_for(zoo) as store:
        for record in records:
            model_id, final = record["model_id"], record["test_accuracy"]
            for epoch, checkpoint in schedule[model_id]:
                for m in measures:
                    result = store.get(result_key(checkpoint.key, checkpoint.sha256, m, seed))
                    rows.append({
                        "model_id": model_id, "epoch": epoch, "quantity": m.name,
                        "value": result.value if result.status == "ok" else np.nan, "status": result.status,
                        "checkpoint": checkpoint.key, "final_test_accuracy": final,
                    })
            for point in record.get("curve", []):
                for quantity in CURVE_QUANTITIES:
                    if point.get(quantity) is None:  # an epoch the schedule did not test (Schedule.test_every)
                        continue
                    rows.append({
                        "model_id": model_id, "epoch": int(point["epoch"]), "quantity": quantity,
                        "value": float(point[quantity]), "status": "ok", "checkpoint": "", "final_test_accuracy": final,
                    })
    return pd.DataFrame(rows, columns=["model_id", "epoch", "quantity", "value", "status", "checkpoint", "final_test_accuracy"])


def dynamics_figure(frame: pd.DataFrame, *, title: str) -> Figure:
    """One panel per measure with a value, then the training accuracy; one colour per model."""
    from matplotlib.ticker import MaxNLocator

    measured = [q for q in dict.fromkeys(frame["quantity"]) if q not in CURVE_QUANTITIES]
    shown = [q for q in measured if (frame.loc[frame["quantity"] == q, "status"] == "ok").any()]
    panels = shown + ["train_accuracy"]
    fig = new_figure(2.5 * len(panels) + 0.4, 3.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    models = list(dict.fromkeys(frame["model_id"]))
    palette = [f"C{i % 10}" for i in range(len(models))]
    for ax, quantity in zip(axes, panels):
        for colour, model_id in zip(palette, models):
            rows = frame[(frame["model_id"] == model_id) & (frame["quantity"] == quantity)].sort_values("epoch")
            final = rows["final_test_accuracy"].iloc[0] if len(rows) else np.nan
            marker = None if quantity in CURVE_QUANTITIES else "o"
            ax.plot(rows["epoch"], rows["value"], marker=marker, ms=3, color=colour, label=f"{model_id} (test {final:.1%})")
        ax.set_title(quantity.replace("_", " "), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    skipped = [q for q in measured if q not in shown]
    note = f"; no value: {', '.join(skipped)}" if skipped else ""
    fig.suptitle(f"{title}: measures over training{note}", fontsize=9)
    fig.legend(*axes[-1].get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncols=min(len(models), 2))
    return fig
