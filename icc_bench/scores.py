"""Store -> scores -> Leaderboard: score every measure of a zoo from the values already stored.

:func:`score_zoo` computes no measure (``icc-bench leaderboard`` relies on that). For each measure,
and for the reference rows (:mod:`icc_bench.reference`), it reads the values from the results store
and computes, against the chosen target:

- the granulated Kendall psi per axis and Psi (:func:`icc_bench.scoring.granulated_kendall`) and
  PGDL's CMI (:func:`icc_bench.scoring.conditional_mutual_information`), the point values;
- their bootstrap intervals (:mod:`icc_bench.uncertainty`), from one set of draws shared by every
  row, so that rows can be compared pairwise: the paired fraction of draws in which one row's Psi
  exceeds another's, and, per column, the set of measures not distinguishable from the best;
- the robust sign-error (:mod:`icc_bench.sign_error`);
- the verdict sentences (:mod:`icc_bench.verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from icc_bench.config import AXES, COMPOSITE_AXES, HyperParams
from icc_bench.leaderboard.model import Leaderboard, MeasureRow, Point
from icc_bench.measure import Measure
from icc_bench.reference import REFERENCE_FAMILY, reference_rows
from icc_bench.regime import population_regime
from icc_bench.scoring import conditional_mutual_information, granulated_kendall, target_values
from icc_bench.sign_error import sign_error
from icc_bench.store import ResultStore, measure_key, store_for
from icc_bench.uncertainty import (
    BootstrapSettings,
    cmi_draws,
    distinguishable,
    granulated_kendall_draws,
    interval,
    make_draws,
    paired_fraction,
)
from icc_bench.verdict import verdict_lines
from icc_bench.version import __version__
from icc_bench.zoo import Zoo, ZooError


def records_frame(zoo: Zoo) -> pd.DataFrame:
    """One row per model: id, sha256, seed, accuracies, the eight axes and any axes beyond them."""
    rows = []
    for r in zoo.records():
        hp = HyperParams.model_validate(r["hyperparams"])
        rows.append(
            {
                "model_id": r["model_id"],
                "checkpoint_sha256": r["checkpoint_sha256"],
                "seed": r.get("seed", 0),
                "train_accuracy": r["train_accuracy"],
                "test_accuracy": r["test_accuracy"],
                "heldout_accuracy": r.get("heldout_accuracy", math.nan),
                **hp.axis_values(),
                **r.get("extra_hyperparams", {}),  # imported zoos: axes beyond the eight (icc_bench.importer)
            }
        )
    return pd.DataFrame(rows)


def scoring_axes(zoo: Zoo) -> list[str]:
    """The axes a zoo is scored on: the records' ``axes`` (an imported zoo declares its own), else
    the eight of SPEC §4. Every record of a zoo must agree."""
    declared = {tuple(r.get("axes", AXES)) for r in zoo.records()}
    if len(declared) > 1:
        listed = " / ".join(", ".join(axes) for axes in sorted(declared))
        raise ZooError(f"{zoo.root}: the records declare different axes ({listed}); import them again as one population")
    return list(declared.pop()) if declared else list(AXES)


def composite_axes(axes: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """CMI's composite axes for ``axes``: the paper's, cut down to ``axes``, then each axis beyond
    the eight as a composite of its own (CMI then assumes it varies independently of the others)."""
    paper = (tuple(a for a in composite if a in axes) for composite in COMPOSITE_AXES)
    return tuple(c for c in paper if c) + tuple((a,) for a in axes if a not in AXES)


def measure_values(store: ResultStore, models: pd.DataFrame, measure: Measure, seed: int = 0) -> tuple[np.ndarray, list[tuple[str, str]], str | None]:
    """Values of one measure aligned with ``models`` (nan where missing or failed), its errors, and
    the not-applicable reason when it applies to no model."""
    by_key = {
        (r.model_id, r.checkpoint_sha256): r
        for r in store.results([measure_key(measure, seed)])
    }
    values = np.full(len(models), math.nan)
    errors: list[tuple[str, str]] = []
    reasons = []
    for i, (model_id, sha) in enumerate(zip(models["model_id"], models["checkpoint_sha256"])):
        r = by_key.get((model_id, sha))
        if r is None:
            continue
        if r.status == "ok":
            values[i] = r.value
        elif r.status == "error":
            errors.append((model_id, r.error or ""))
        else:
            reasons.append(r.error or "not applicable")
    not_applicable = reasons[0] if reasons and len(reasons) == len(models) else None
    return values, errors, not_applicable


def shared_predictions(zoo: Zoo, models: pd.DataFrame, split: str) -> tuple[np.ndarray | None, str]:
    """(models x images) correctness on ``split`` when every model has predictions for one shared
    set of images, else None; and a phrase saying which (for the leaderboard)."""
    correct, labels = [], None
    for model_id in models["model_id"]:
        predictions = zoo.read_predictions(model_id)
        if predictions is None or split not in predictions:
            return None, f"model {model_id} has no stored {split} predictions (trained before they were kept, or imported)"
        predicted, model_labels = predictions[split]
        if labels is None:
            labels = model_labels
        elif not np.array_equal(labels, model_labels):
            return None, f"model {model_id} was tested on other {split} images than the first model"
        correct.append(predicted == model_labels)
    if not correct:
        return None, "no models"
    return np.stack(correct), f"{len(labels)} {split} images"


def score_zoo(
    zoo: Zoo,
    measures: Sequence[Measure],
    *,
    target: str = "test_accuracy",
    kendall: str = "tau_a",
    command: str = "",
    seed: int = 0,
    bootstrap: BootstrapSettings | None = None,
    references: bool = True,
    show_sign_error: bool = False,
) -> Leaderboard:
    """Build the leaderboard of ``measures`` on ``zoo`` from the store (computes no measure).

    ``bootstrap`` None means the default (B = 1000, 90%); ``BootstrapSettings(draws=0)`` switches
    intervals off. ``references`` adds the reference rows; ``show_sign_error`` asks the renderers
    for the sign-error columns (the JSON always has them).
    """
    bootstrap = BootstrapSettings(seed=seed) if bootstrap is None else bootstrap
    models = records_frame(zoo)
    if models.empty:
        raise ZooError(f"{zoo.root}: the zoo holds no model records; train or import models first")
    y = target_values(models, target)
    axes = scoring_axes(zoo)
    composites = composite_axes(axes)
    hparams = models[axes]
    shown = models[list(dict.fromkeys([*AXES, *axes]))]  # the scatter plots may colour by any hyperparameter
    correct, test_source = shared_predictions(zoo, models, "test")
    offset = -models["train_accuracy"].to_numpy(dtype=np.float64) if target == "generalization_gap" else None
    n_test = None if correct is None else correct.shape[1]

    draws = None
    if bootstrap.draws > 0:
        draws = make_draws(y, hparams, axes, bootstrap, correct=correct, offset=offset)
        resampled = "groups and test images" if draws.images_resampled else f"groups only ({test_source})"
        bootstrap_info = {"draws": bootstrap.draws, "level": bootstrap.level, "seed": bootstrap.seed, "resampled": resampled}
    else:
        bootstrap_info = {"draws": 0, "level": bootstrap.level, "seed": bootstrap.seed, "resampled": "off (--bootstrap 0)"}

    # The rows to score: the measures (values from the store), then the reference rows.
    entries = []
    with store_for(zoo) as store:
        for m in measures:
            values, errors, not_applicable = measure_values(store, models, m, seed)
            entries.append((m.name, m.name, m.family, m.higher_is_better, m.settings.model_dump(mode="json"),
                            m.settings_hash, m.plugin.label if m.plugin else "", values, errors, not_applicable, False,
                            m.reads_heldout))
    if references:
        heldout = models["heldout_accuracy"].to_numpy(dtype=np.float64)
        heldout_target = heldout if offset is None else heldout + offset
        for ref in reference_rows(list(models["model_id"]), y, seed=seed, heldout_target=heldout_target):
            entries.append((ref.name, ref.label, REFERENCE_FAMILY, True, {"description": ref.description}, "", "icc-bench",
                            ref.values, [], None, True, False))

    rows, points, total_draws, column_draws, ties = [], {}, {}, {}, []
    for name, label, family, higher, settings, settings_hash, plugin, values, errors, not_applicable, is_reference, heldout in entries:
        if not is_reference and not_applicable is None and (tie := tie_note(name, values)):
            ties.append(tie)
        intervals: dict[str, list[float]] = {}
        sign = None
        if not_applicable is None and np.isfinite(values).sum() >= 2:
            gk = granulated_kendall(values, y, hparams, axes=tuple(axes), variant=kendall, higher_is_better=higher)
            cmi_score = math.nan  # CMI conditions on pairs of composite axes: none with fewer than two
            if len(composites) >= 2:
                cmi_score = conditional_mutual_information(values, y, hparams, composite_axes=composites, higher_is_better=higher).score
            per_axis, groups, total, dropped = gk.per_axis, gk.groups, gk.total, gk.n_nan_dropped
            if draws is not None:
                axis_draws, psi_draws = granulated_kendall_draws(values, draws, hparams, axes, variant=kendall, higher_is_better=higher)
                cmi_samples = cmi_draws(values, draws, hparams, composites, higher_is_better=higher) if len(composites) >= 2 else np.full(draws.draws, np.nan)
                column_draws[name] = {**axis_draws, "total": psi_draws, "cmi": cmi_samples}
                total_draws[name] = psi_draws
                intervals = {key: list(interval(d, bootstrap.level)) for key, d in column_draws[name].items()}
            if n_test is not None:
                se = sign_error(values, y, hparams, axes, n_test=n_test, higher_is_better=higher)
                sign = {"robust": se.robust, "mean": se.mean, "environments": se.environments,
                        "environments_total": se.environments_total, "min_ess": se.min_ess, "n_test": se.n_test}
        else:
            per_axis = {a: math.nan for a in axes}
            groups = {a: 0 for a in axes}
            total = cmi_score = math.nan
            dropped = int((~np.isfinite(values)).sum())
        rows.append(
            MeasureRow(
                measure=name, label=label, family=family, higher_is_better=higher, settings=settings,
                settings_hash=settings_hash, plugin=plugin, per_axis=dict(per_axis), groups=dict(groups),
                total=total, cmi=cmi_score, n_models=int(np.isfinite(values).sum()), n_nan_dropped=dropped,
                errors=errors, not_applicable=not_applicable, intervals=intervals, reference=is_reference, sign_error=sign,
                reads_heldout=heldout,
            )
        )
        if not is_reference:
            points[name] = [
                Point(model_id=mid, value=None if not np.isfinite(v) else float(v), target=float(t), hyperparams=hp)
                for mid, v, t, hp in zip(models["model_id"], values, y, shown.to_dict("records"))
            ]

    paired = {a: {b: paired_fraction(da, db) for b, db in total_draws.items() if b != a} for a, da in total_draws.items()}
    best = best_sets(rows, column_draws, bootstrap.level, axes)
    spec = zoo.read_spec() or {}
    notes = []
    if spec:
        notes.append(f"dataset: {spec['dataset']['name']} {spec['dataset'].get('options') or ''}".strip())
        notes.append(f"architecture: {spec['architecture']['name']} (base width {spec['architecture'].get('base_width')})")
        if "schedule" in spec:  # an imported zoo does not know how its models were trained
            notes.append(f"schedule: {spec['schedule']['epochs']} epochs")
    notes.append(f"test set: {test_source}" if correct is not None else f"test set: no shared predictions, {test_source}")
    regime = population_regime(list(zoo.records()))
    notes.append(f"regime: {regime.summary()}")
    if regime.warning():
        notes.append(f"warning: this population is {regime.warning()}")
    notes += ties
    lb = Leaderboard(
        population=spec.get("name", zoo.root.name), zoo=str(zoo.root), target=target, kendall=kendall,
        icc_bench_version=__version__, command=command,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        n_models=len(models), axes=axes, rows=rows, points=points, notes=notes,
        bootstrap=bootstrap_info, paired=paired, best=best, show_sign_error=show_sign_error,
    )
    lb.verdict = verdict_lines(lb)
    return lb


#: A measure whose most common value is shared by more than this share of the models gets a note.
TIE_SHARE = 0.05


def tie_note(name: str, values: np.ndarray) -> str | None:
    """A note when more than :data:`TIE_SHARE` of the models (and at least two) share one value of
    a measure: Kendall cannot order them among themselves, so the measure ranks fewer pairs than
    the population has (a sharpness measure at its search cap, a count-valued measure)."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return None
    distinct, counts = np.unique(finite, return_counts=True)
    top = int(counts.argmax())
    tied = int(counts[top])
    if tied < 2 or tied <= TIE_SHARE * len(finite):
        return None
    return (
        f"ties: {name} gives {tied} of {len(finite)} models one value ({distinct[top]:.4g}); "
        "Kendall cannot order them among themselves"
    )


def best_sets(rows: list[MeasureRow], column_draws: dict[str, dict[str, np.ndarray]], level: float, axes: list[str]) -> dict[str, list[str]]:
    """Per column, the measures marked best: the best value among the measures (reference rows
    excluded), and every measure not distinguishable from it at ``level`` (paired bootstrap). With
    the bootstrap off, the measures whose value equals the best at the displayed two decimals."""
    best: dict[str, list[str]] = {}
    for key in [*axes, "total", "cmi"]:
        candidates = {
            r.measure: _column_value(r, key) for r in rows
            if not r.reference and r.not_applicable is None and math.isfinite(_column_value(r, key))
        }
        if not candidates:
            best[key] = []
            continue
        top = max(candidates, key=lambda m: candidates[m])
        if column_draws and top in column_draws:
            reference = column_draws[top][key]
            best[key] = [
                m for m in candidates
                if m == top or (m in column_draws and not distinguishable(paired_fraction(reference, column_draws[m][key]), level))
            ]
        else:
            shown = round(candidates[top], 2)
            best[key] = [m for m, v in candidates.items() if round(v, 2) == shown]
    return best


def _column_value(row: MeasureRow, key: str) -> float:
    if key == "total":
        return row.total
    if key == "cmi":
        return row.cmi
    return row.per_axis.get(key, math.nan)
