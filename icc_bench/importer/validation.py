"""Validating a manifest: every row read against the schema, its checkpoint against its architecture
and the dataset; every problem collected, one line each. Writes nothing."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from icc_bench.config import AXES, ArchitectureSpec, DatasetSpec, HyperParams
from icc_bench.files import sha256_file
from icc_bench.importer.checkpoints import CheckpointError, build_imported_model, load_checkpoint, runs_on, state_dict_mismatch
from icc_bench.importer.manifest import JSON_COLUMNS, Manifest, ManifestError, ManifestRow, error_message

#: ``width`` and ``depth`` factors of 1 build the architecture as named, so they may go unstated.
AXIS_DEFAULTS: dict[str, float] = {"width": 1.0, "depth": 1.0}
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_AXIS_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Names a new axis may not take: the columns beside the axes in scores.records_frame and in the
# leaderboard's CSV.
_RESERVED_AXES = frozenset(
    {"model_id", "checkpoint_sha256", "seed", "train_accuracy", "test_accuracy", "measure", "family",
     "direction", "total", "cmi", "n_models", "n_errors"}
)


class Problems:
    """Problems collected across rows; one message repeated on several rows is one line."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[tuple[int | None, str | None]]] = {}

    def add(self, where: str, message: str, row: int | None = None, model_id: str | None = None) -> None:
        self._rows.setdefault((where, message), []).append((row, model_id))

    def __bool__(self) -> bool:
        return bool(self._rows)

    def lines(self, n_rows: int) -> list[str]:
        out = []
        for (where, message), rows in self._rows.items():
            numbered = [r for r in rows if r[0] is not None]
            if not numbered or where.startswith("constant"):  # a constant is wrong once, not per row
                prefix = where
            elif len(numbered) == n_rows > 1:
                prefix = f"every row, {where}"
            elif len(numbered) == 1:
                row, model_id = numbered[0]
                prefix = f"row {row}" + (f" ({model_id!r})" if model_id else "") + f", {where}"
            else:
                more = f" and {len(numbered) - 5} more" if len(numbered) > 5 else ""
                prefix = f"rows {', '.join(str(r) for r, _ in numbered[:5])}{more}, {where}"
            out.append(f"{prefix}: {message}")
        return out


# -- validation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedModel:
    """One validated row, ready to be written."""

    row: int
    model_id: str
    checkpoint: Path
    checkpoint_key: str | None
    source_sha256: str
    architecture: ArchitectureSpec
    architecture_options: dict[str, Any]
    hyperparams: HyperParams
    extra_hyperparams: dict[str, Any]
    seed: int
    train_accuracy: float | None
    test_accuracy: float | None
    manifest_row: dict[str, Any]  # the cells as the manifest wrote them


@dataclass(frozen=True)
class ImportPlan:
    """A whole validated manifest: what :func:`write_import` writes."""

    name: str
    manifest: Path
    manifest_sha256: str
    dataset: DatasetSpec
    axes: list[str]
    measure_settings: dict[str, dict[str, Any]]
    models: list[PlannedModel]


@dataclass(frozen=True)
class _Row:
    """One row read against the schema, its values not yet checked against files or data."""

    number: int
    fields: ManifestRow
    hyperparams: HyperParams
    extra: dict[str, Any]
    where: dict[str, str]  # schema name -> "column 'lr'" or "constant 'dataset'", as the user wrote it
    raw: dict[str, Any]


def declared_axes(manifest: Manifest) -> list[str]:
    """The axes the manifest declares: the eight in table order, then the new ones as declared."""
    mapped = list(manifest.axes.values())
    return [a for a in AXES if a in mapped] + [a for a in mapped if a not in AXES]


def _check_settings(manifest: Manifest, problems: Problems) -> None:
    """Problems in the axes / constants / rename settings, before any row is read."""
    known = set(ManifestRow.model_fields)
    axis_of: dict[str, str] = {}
    for column, axis in manifest.axes.items():
        where = f"axes '{column}={axis}'"
        if axis not in AXES and (not _AXIS_NAME.fullmatch(axis) or axis in _RESERVED_AXES or axis in known):
            problems.add(where, f"'{axis}' is neither one of the eight axes ({', '.join(AXES)}) nor a new snake_case "
                                "axis name (one that is no manifest column, nor total, cmi, measure, family)")
        if axis in axis_of:
            problems.add(where, f"axis '{axis}' is already the axis of column '{axis_of[axis]}'; map one column per axis")
        axis_of[axis] = column
        if column in known or column in manifest.rename:
            problems.add(where, f"column '{column}' is a column icc-bench reads, not a hyperparameter")
        if axis in manifest.constants:
            problems.add(where, f"axis '{axis}' is also a constant; an axis varies between models, a constant does not")
    for name in manifest.constants:
        if name not in known and name not in AXES:
            problems.add(f"constant '{name}'", f"not a manifest column ({', '.join(known)}) nor one of the eight "
                                               "hyperparameters (a new axis varies, so it comes from a column)")
    for column, name in manifest.rename.items():
        if name not in known:
            problems.add(f"rename '{column}={name}'", f"'{name}' is not a column icc-bench reads ({', '.join(known)})")
    for axis in AXES:
        if axis not in axis_of and axis not in manifest.constants and axis not in AXIS_DEFAULTS:
            problems.add(f"hyperparameter '{axis}'", f"has no value: map your column onto it (--axes COLUMN={axis}) "
                                                     f"or give the value every model shares (--set {axis}=VALUE)")


def _parse_cell(value: Any, name: str) -> Any:
    """A cell as the schema wants it. JSON values pass as they are; text (CSV, --set) becomes a JSON
    object for the *_options columns, and a number where it reads as one for a new axis."""
    if name == "optimizer" and isinstance(value, str):
        return value.strip().lower()  # "SGD", "Adam", as scripts often write them
    if not isinstance(value, str):
        return value
    value = value.strip()
    if name in JSON_COLUMNS:
        return json.loads(value)  # the caller reports a JSONDecodeError
    if name in AXES or name in ManifestRow.model_fields:
        return value  # pydantic's lax mode reads "0.1", "128", "true"
    for convert in (int, float):  # a new axis: numbers compare as numbers ("0.90" == "0.9")
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def _is_axis_value(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (bool, int)) or (isinstance(value, str) and value != "")


def _read_row(manifest: Manifest, number: int, raw: dict[str, Any], problems: Problems) -> _Row | None:
    """One row against the schema; its problems go to ``problems`` and it returns None if any is fatal."""
    axis_of_column = manifest.axes
    column_of = {**{name: column for column, name in manifest.rename.items()},
                 **{axis: column for column, axis in manifest.axes.items()}}  # where an absent value was looked for
    cells: dict[str, Any] = {}  # schema name -> value
    where: dict[str, str] = {}
    for column, value in raw.items():
        if column in manifest.ignore:
            continue
        name = axis_of_column.get(column) or manifest.rename.get(column, column)
        if name not in ManifestRow.model_fields and column not in axis_of_column:
            problems.add(f"column '{column}'", "unknown column: map it onto an axis (--axes), rename it onto a column "
                                               "icc-bench reads (--rename), or leave it out (--ignore)", number)
            continue
        if name in cells:
            problems.add(f"column '{column}'", f"gives {name} as {where[name]} does; keep one", number)
        cells[name], where[name] = value, f"column '{column}'"
    for name, value in manifest.constants.items():
        if name in cells:
            problems.add(where[name], f"also given as a constant ({name}={value!r}); keep one", number)
        cells.setdefault(name, value)
        where.setdefault(name, f"constant '{name}'")
    for name in [n for n in AXES if n not in where] + [n for n in ManifestRow.model_fields if n not in where]:
        where[name] = f"column '{column_of.get(name, name)}'"
    for name in list(cells):
        try:
            cells[name] = _parse_cell(cells[name], name)
        except json.JSONDecodeError as e:
            problems.add(where[name], f"not a JSON object ({e.msg}); write it as {{\"name\": value, ...}}", number)
            del cells[name]
    fields = {k: v for k, v in cells.items() if k in ManifestRow.model_fields}
    model_id = fields.get("model_id")
    if model_id is None and fields.get("checkpoint"):
        model_id = Path(str(fields["checkpoint"])).stem
        where["model_id"] = where["checkpoint"]  # a problem with this id is one with the checkpoint's name

    def report(error: ValidationError, suffix: Callable[[str], str]) -> None:
        for err in error.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            what = "missing value" if err["type"] == "missing" else f"{error_message(err)} (got {err.get('input')!r})"
            problems.add(where.get(name, f"column '{name}'"), what + suffix(name), number, model_id)

    row = hp = None
    try:
        row = ManifestRow.model_validate(fields)
    except ValidationError as e:
        report(e, lambda name: "")
    try:
        hp = HyperParams.model_validate({**AXIS_DEFAULTS, **{a: cells[a] for a in AXES if a in cells}})
    except ValidationError as e:
        report(e, lambda name: f" ({name})")
    extra = {a: cells.get(a) for a in declared_axes(manifest) if a not in AXES}
    for axis, value in extra.items():
        if not _is_axis_value(value):
            what = "missing value" if value is None else f"{value!r} is not a finite number, a string or a boolean"
            problems.add(where.get(axis, f"column '{column_of[axis]}'"), f"{what} (axis {axis})", number, model_id)
    if row is None or hp is None or not all(_is_axis_value(v) for v in extra.values()):
        return None
    return _Row(number, row.model_copy(update={"model_id": model_id}), hp, extra, where, raw)


def _check_ids_and_accuracies(rows: list[_Row], measure_accuracy: bool, problems: Problems) -> None:
    first_row_of: dict[str, int] = {}
    for r in rows:
        model_id = r.fields.model_id
        if not _MODEL_ID.fullmatch(model_id):
            problems.add(r.where["model_id"], f"model id {model_id!r} must be letters, digits, _ . - (starting with a "
                                              "letter or digit); give a model_id", r.number)
        elif model_id in first_row_of:
            problems.add(r.where["model_id"],
                         f"model id {model_id!r} is also row {first_row_of[model_id]}'s; model ids must be unique",
                         r.number, model_id)
        else:
            first_row_of[model_id] = r.number
        for name in () if measure_accuracy else ("train_accuracy", "test_accuracy"):
            if getattr(r.fields, name) is None:
                problems.add(r.where[name], "missing value: give the final accuracy (a fraction in [0, 1]) or pass "
                                            "--measure-accuracy to measure it on the dataset", r.number, model_id)


def _common_dataset(rows: list[_Row], data_dir: str | Path | None, problems: Problems):
    """The dataset every row names, loaded, as (spec, ImageDataset); (None, None) when there is none."""
    from icc_bench.data import DataError
    from icc_bench.data.cache import load_job_dataset

    if not rows:
        return None, None
    specs = [DatasetSpec(name=r.fields.dataset, options=r.fields.dataset_options) for r in rows]
    if any(spec != specs[0] for spec in specs):
        for r, spec in zip(rows, specs):
            if spec != specs[0]:
                problems.add(r.where["dataset"], f"a population shares one dataset, and row {rows[0].number} has "
                             f"{specs[0].name} {json.dumps(specs[0].options)}", r.number, r.fields.model_id)
        return None, None
    try:
        return specs[0], load_job_dataset(specs[0], data_dir)
    except DataError as e:
        problems.add(rows[0].where["dataset"], str(e))
        return None, None


def _check_checkpoint(r: _Row, folder: Path, dataset, problems: Problems) -> PlannedModel | None:
    """Read the row's checkpoint and check it fits its architecture and runs on the dataset."""
    model_id, where = r.fields.model_id, r.where["checkpoint"]
    path = Path(r.fields.checkpoint).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        problems.add(where, f"no such file {path}", r.number, model_id)
        return None
    try:
        state_dict = load_checkpoint(path, r.fields.checkpoint_key)
    except CheckpointError as e:
        problems.add(where, str(e), r.number, model_id)
        return None
    if dataset is None:
        return None  # the dataset's problem is reported; without it the fit cannot be checked
    arch = ArchitectureSpec(name=r.fields.architecture, base_width=r.fields.base_width, base_depth=r.fields.base_depth)
    options = r.fields.architecture_options
    try:
        model = build_imported_model(arch, options, r.hyperparams, dataset.num_classes, dataset.input_shape)
    except (ValueError, TypeError) as e:
        problems.add(r.where["architecture"], str(e).splitlines()[0], r.number, model_id)
        return None
    mismatch = state_dict_mismatch(model.state_dict(), state_dict) or runs_on(model, state_dict, dataset)
    if mismatch is not None:
        problems.add(where, f"{path.name}: {mismatch}", r.number, model_id)
        return None
    return PlannedModel(
        row=r.number, model_id=model_id, checkpoint=path, checkpoint_key=r.fields.checkpoint_key,
        source_sha256=sha256_file(path), architecture=arch, architecture_options=options, hyperparams=r.hyperparams,
        extra_hyperparams=r.extra, seed=r.fields.seed, train_accuracy=r.fields.train_accuracy,
        test_accuracy=r.fields.test_accuracy, manifest_row=r.raw,
    )


def plan_import(
    manifest: Manifest, manifest_path: str | Path, zoo_dir: str | Path, *, data_dir: str | Path | None = None,
    measure_accuracy: bool = False, on_row: Callable[[str], None] | None = None,
) -> ImportPlan:
    """Validate every row of ``manifest``: the plan, or a :class:`ManifestError` listing every problem.

    Reads every checkpoint and builds every network; writes nothing. ``on_row(model_id)`` is called
    before each checkpoint is checked (progress displays use it).
    """
    manifest_path, zoo_dir = Path(manifest_path), Path(zoo_dir)
    problems = Problems()
    if zoo_dir.exists() and (not zoo_dir.is_dir() or any(zoo_dir.iterdir())):
        problems.add(f"--to {zoo_dir}", "already exists and is not empty; import into a new folder")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", zoo_dir.name):
        problems.add(f"--to {zoo_dir}", "the folder's name is the population's name: use letters, digits, _ . - only")
    _check_settings(manifest, problems)
    if problems:  # the settings decide how every row reads: checking rows against wrong ones says nothing
        raise ManifestError(manifest_path, problems.lines(len(manifest.models)))

    rows = [r for n, raw in enumerate(manifest.models, start=1) if (r := _read_row(manifest, n, raw, problems))]
    _check_ids_and_accuracies(rows, measure_accuracy, problems)
    dataset_spec, dataset = _common_dataset(rows, data_dir, problems)
    models = []
    for r in rows:
        if on_row is not None:
            on_row(r.fields.model_id)
        models.append(_check_checkpoint(r, manifest_path.parent, dataset, problems))
    if problems:
        raise ManifestError(manifest_path, problems.lines(len(manifest.models)))
    return ImportPlan(
        name=zoo_dir.name, manifest=manifest_path.resolve(), manifest_sha256=sha256_file(manifest_path),
        dataset=dataset_spec, axes=declared_axes(manifest), measure_settings=manifest.measure_settings, models=models,
    )
