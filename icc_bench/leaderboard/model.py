"""The leaderboard's data model: what :mod:`icc_bench.scores` fills, every renderer reads, and the
JSON file holds (:func:`to_json` / :func:`from_json`, an exact round trip)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Identifies a leaderboard JSON file; bump the version when a field changes meaning.
JSON_FORMAT = "icc-bench-leaderboard"
JSON_VERSION = 2

#: Column headers of the eight axes, as in the paper's tables.
SHORT_AXIS_NAMES: dict[str, str] = {
    "learning_rate": "lr", "batch_size": "bs", "weight_decay": "wd", "optimizer": "opt",
    "dropout": "drop", "augmentation": "aug", "width": "width", "depth": "depth",
}
#: What each target is, as plotted: oriented so that higher = better generalization (SPEC §4).
TARGET_LABELS = {
    "test_accuracy": "test accuracy",
    "generalization_gap": "test - train accuracy",
}
_KENDALL_VARIANTS = ("tau_a", "tau_b")


@dataclass
class MeasureRow:
    """The scores of one measure on the population: one row of the table.

    ``per_axis``, ``total`` and ``cmi`` are oriented so that positive means "ranks the models the
    right way round" (see :mod:`icc_bench.scoring`); NaN where undefined. A row with
    ``not_applicable`` set is shown with its reason and no numbers.
    """

    measure: str
    label: str
    family: str
    higher_is_better: bool
    settings: dict[str, Any]
    settings_hash: str
    plugin: str
    per_axis: dict[str, float]
    groups: dict[str, int]
    total: float
    cmi: float
    n_models: int
    n_nan_dropped: int
    errors: list[tuple[str, str]] = field(default_factory=list)
    not_applicable: str | None = None
    intervals: dict[str, list[float]] = field(default_factory=dict)  # column key -> [lo, hi]; empty without a bootstrap
    reference: bool = False  # a reference row (oracle, random): shown in its own family, never best
    sign_error: dict[str, Any] | None = None  # icc_bench.sign_error.SignError as a dict; None without predictions
    reads_heldout: bool = False  # the measure reads held-out inputs the others never see: marked HELDOUT_MARK


@dataclass
class Point:
    """One model in a scatter plot.

    ``value`` is the raw measure (not negated); None when the model has none (it failed, or the
    measure does not apply). ``target`` is the generalization target oriented as
    :func:`icc_bench.scoring.target_values` returns it (higher = better generalization).
    """

    model_id: str
    value: float | None
    target: float
    hyperparams: dict[str, Any]

    def __post_init__(self) -> None:
        # NaN and None both mean "no value"; one spelling keeps the JSON round trip exact.
        if self.value is not None and math.isnan(self.value):
            self.value = None


@dataclass
class Leaderboard:
    """Everything a leaderboard shows, and everything needed to re-render it without measuring.

    ``settings`` of rows and ``hyperparams`` of points must be JSON values (as pydantic's
    ``model_dump(mode="json")`` gives): they are stored as they are.
    """

    population: str
    zoo: str
    target: str
    kendall: str
    icc_bench_version: str
    command: str
    created: str
    n_models: int
    axes: list[str]
    rows: list[MeasureRow]
    points: dict[str, list[Point]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=lambda: {"draws": 0, "level": 0.9, "seed": 0, "resampled": "off"})
    paired: dict[str, dict[str, float]] = field(default_factory=dict)  # P(Ψ of row > Ψ of column) over the draws
    best: dict[str, list[str]] = field(default_factory=dict)  # column key -> measures marked best
    verdict: list[str] = field(default_factory=list)
    show_sign_error: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGET_LABELS:
            raise ValueError(f"leaderboard target {self.target!r} is not one of {tuple(TARGET_LABELS)}.")
        if self.kendall not in _KENDALL_VARIANTS:
            raise ValueError(f"leaderboard kendall {self.kendall!r} is not one of {_KENDALL_VARIANTS}.")
        names = [row.measure for row in self.rows]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"leaderboard has several rows for measure(s) {duplicates}; rows and scatter points are "
                "keyed by measure name, so give each settings variant its own name."
            )
        for row in self.rows:
            unknown = sorted(set(row.per_axis) - set(self.axes))
            if unknown:
                raise ValueError(f"row {row.measure!r} scores axes {unknown} that are not in the leaderboard's axes {self.axes}.")
        orphans = sorted(set(self.points) - set(names))
        if orphans:
            raise ValueError(f"leaderboard has scatter points for measure(s) {orphans} but no row for them.")

    def row(self, measure: str) -> MeasureRow:
        for row in self.rows:
            if row.measure == measure:
                return row
        raise KeyError(f"leaderboard has no measure {measure!r}; it has: {', '.join(r.measure for r in self.rows)}.")


def _jsonable(obj: Any) -> Any:
    """Strict-JSON form: NaN -> null, +-inf -> "Infinity"/"-Infinity", tuples -> lists."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _float(value: Any) -> float:
    """Inverse of :func:`_jsonable` for a float field: null -> NaN."""
    if value is None:
        return float("nan")
    return float(value)  # float("Infinity") parses


def envelope_json(fmt: str, version: int, board: Any) -> str:
    """A dataclass leaderboard as strict JSON (no NaN literals) under ``format`` and ``version``."""
    payload = {"format": fmt, "version": version, **asdict(board)}
    return json.dumps(_jsonable(payload), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def open_envelope(text: str, fmt: str, version: int, *, what: str, regenerate: str) -> dict[str, Any]:
    """The fields of JSON written by :func:`envelope_json`, after checking its format and version;
    ``what`` names the kind of file in the errors, ``regenerate`` the command that remakes it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} JSON is not valid JSON ({e}); regenerate it with {regenerate}.") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ValueError(f"this JSON is not an icc-bench {what} (no \"format\": \"{fmt}\").")
    if data.get("version") != version:
        raise ValueError(
            f"{what} JSON has version {data.get('version')!r}, this icc-bench reads version "
            f"{version}; regenerate it with {regenerate}."
        )
    return data


def to_json(lb: Leaderboard) -> str:
    """The leaderboard as strict JSON (no NaN literals), read back by :func:`from_json`."""
    return envelope_json(JSON_FORMAT, JSON_VERSION, lb)


def from_json(text: str) -> Leaderboard:
    """Read a leaderboard written by :func:`to_json`; null floats come back as NaN."""
    data = open_envelope(text, JSON_FORMAT, JSON_VERSION, what="leaderboard", regenerate="icc-bench evaluate")
    try:
        rows = [
            MeasureRow(
                **{k: r[k] for k in ("measure", "label", "family", "higher_is_better", "settings", "settings_hash", "plugin")},
                per_axis={axis: _float(v) for axis, v in r["per_axis"].items()},
                groups={axis: int(v) for axis, v in r["groups"].items()},
                total=_float(r["total"]),
                cmi=_float(r["cmi"]),
                n_models=int(r["n_models"]),
                n_nan_dropped=int(r["n_nan_dropped"]),
                errors=[(str(model_id), str(message)) for model_id, message in r["errors"]],
                not_applicable=r["not_applicable"],
                intervals={key: [_float(lo), _float(hi)] for key, (lo, hi) in r["intervals"].items()},
                reference=bool(r["reference"]),
                sign_error=r["sign_error"],
                reads_heldout=bool(r["reads_heldout"]),
            )
            for r in data["rows"]
        ]
        points = {
            measure: [
                Point(p["model_id"], None if p["value"] is None else float(p["value"]), _float(p["target"]), p["hyperparams"])
                for p in plist
            ]
            for measure, plist in data["points"].items()
        }
        scalars = ("population", "zoo", "target", "kendall", "icc_bench_version", "command", "created")
        return Leaderboard(
            **{k: data[k] for k in scalars}, n_models=int(data["n_models"]), axes=list(data["axes"]),
            rows=rows, points=points, notes=list(data["notes"]), bootstrap=dict(data["bootstrap"]),
            paired={a: {b: _float(v) for b, v in row.items()} for a, row in data["paired"].items()},
            best={key: list(v) for key, v in data["best"].items()}, verdict=list(data["verdict"]),
            show_sign_error=bool(data["show_sign_error"]),
        )
    except KeyError as e:
        raise ValueError(f"leaderboard JSON lacks the field {e.args[0]!r}; regenerate it with icc-bench evaluate.") from None


def read_leaderboard(path: str | Path) -> Leaderboard:
    """Read a leaderboard JSON file; errors name the file."""
    path = Path(path)
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no leaderboard JSON here; run icc-bench evaluate to make one.") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
