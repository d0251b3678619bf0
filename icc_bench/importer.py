"""``icc-bench import``: a population trained elsewhere becomes an ordinary zoo.

Researchers who trained their own population have checkpoints and a table of hyperparameters and
accuracies. ``icc-bench import MANIFEST --to ZOO_DIR`` turns them into a zoo like those
``icc-bench train`` writes (safetensors checkpoints with their sha256, one record per model, a
``population.json``), so that ``icc-bench evaluate ZOO_DIR`` and ``icc-bench leaderboard ZOO_DIR``
work on it. ``icc-bench import --template [PATH]`` writes an annotated example manifest.

The manifest
------------
A CSV file (one row per model; ``#`` lines before the header are comments) or a JSON file::

    {"axes": {"lr": "learning_rate", "bs": "batch_size", "mom": "momentum"},
     "constants": {"dataset": "cifar10", "architecture": "vgg", "optimizer": "sgd", ...},
     "rename": {"ckpt": "checkpoint", "acc": "test_accuracy"},
     "ignore": ["notes"],
     "measure_settings": {"c2": {"k": 1}},
     "models": [{"ckpt": "ckpts/a.pt", "lr": 0.1, "bs": 128, "mom": 0.9, "acc": 0.91, ...}, ...]}

A CSV manifest takes these settings from the command line (``--axes``, ``--set``, ``--rename``,
``--ignore``); a JSON manifest takes each one from the file or from the command line, not both.

- The columns icc-bench reads are the fields of :class:`ManifestRow` (``checkpoint``,
  ``architecture``, ``dataset``, the accuracies, ...); ``rename`` maps your names onto them.
- ``axes`` maps each of *your* hyperparameter columns onto an axis: one of the eight of SPEC §4
  (``learning_rate`` ... ``depth``) or a new snake_case name, an axis beyond the eight.
- ``constants`` gives a value that every model shares: a ManifestRow column, or one of the eight
  hyperparameters that is not an axis. Each of the eight needs a value, from an axis column or a
  constant; only ``width`` and ``depth`` default (to 1: the architecture as named).
- Any other column is an error, unless ``ignore`` lists it.

Problems name the row (the first model is row 1, whatever the file's header and comments) and the
column as the manifest spells it.

Scoring uses the declared axes
------------------------------
Each record lists the declared axes in ``axes`` (the eight in table order, then the new ones) and
holds the values of the new ones in ``extra_hyperparams``; its ``hyperparams`` holds all eight,
constants included. ``icc_bench.evaluate.score_zoo`` scores on the records' axes: granulated Kendall
groups the models on them (a constant never splits a group, so only declared axes can), the
leaderboard has one column per declared axis, and CMI conditions on the paper's composite axes cut
down to the declared ones, each new axis being a composite axis of its own.

Architectures
-------------
``vgg`` and ``wrn`` (with ``base_width`` / ``base_depth``, built at the row's width, depth and
dropout), ``timm:<model name>``, or a factory of yours, ``factory:<module>:<function>``: icc-bench
imports ``<module>`` (it must be importable, e.g. through ``PYTHONPATH``, whenever the zoo is
loaded) and calls ``function(num_classes=<the dataset's training classes>, **architecture_options)``.
The function must be a plain Python function with a parameter named ``num_classes``, take every
option as a keyword, and return an ``nn.Module`` whose ``state_dict`` has the checkpoint's keys and
shapes.

What is refused, and when
-------------------------
Checkpoints are ``.safetensors`` files, or ``.pt`` / ``.pth`` files read only with
``torch.load(weights_only=True)``, which refuses any pickle that would run code. Every row is
validated before anything is written (the file exists and fits its architecture, the model runs on
the dataset's images, every value is valid), and every problem is reported, one line each. The zoo
is then written into a hidden folder beside ZOO_DIR and renamed into place: ZOO_DIR holds the whole
import or nothing (a killed import leaves only the hidden ``.<name>.import-*`` folder).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import io
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from icc_bench.config import AXES, ArchitectureSpec, DatasetSpec, HyperParams, PopulationSpec, SpecError

# torch (and icc_bench.zoo, which imports it) is imported in the functions that use it: the CLI
# builds this command's parser on every start, `icc-bench --help` included.
if TYPE_CHECKING:
    import torch
    from torch import nn

#: Architecture names of the form ``factory:<module>:<function>`` are built by a user's function.
FACTORY_PREFIX = "factory:"
#: ``width`` and ``depth`` factors of 1 build the architecture as named, so they may go unstated.
AXIS_DEFAULTS: dict[str, float] = {"width": 1.0, "depth": 1.0}
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_AXIS_NAME = re.compile(r"[a-z][a-z0-9_]*")
_FACTORY = re.compile(r"factory:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")
_JSON_COLUMNS = ("architecture_options", "dataset_options")
# Names a new axis may not take: the columns beside the axes in evaluate.records_frame and in the
# leaderboard's CSV.
_RESERVED_AXES = frozenset(
    {"model_id", "checkpoint_sha256", "seed", "train_accuracy", "test_accuracy", "measure", "family",
     "direction", "total", "cmi", "n_models", "n_errors"}
)


class ManifestError(SpecError):
    """A manifest that cannot be imported; ``problems`` holds one line per problem found."""

    def __init__(self, source: Path | str, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{source}: {problems[0]}; nothing imported")
            return
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problems, nothing imported:\n{lines}")


# -- the schema ----------------------------------------------------------------------------------
class ManifestRow(BaseModel):
    """One model: the manifest columns icc-bench reads (hyperparameter columns are the ``axes``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str | None = Field(
        None, description="a unique name in the zoo (letters, digits, _ . -); default: the checkpoint's file name"
    )
    checkpoint: str = Field(
        description="the state_dict: .safetensors, or .pt/.pth (read with torch.load(weights_only=True)); "
        "relative to the manifest's folder, or absolute"
    )
    checkpoint_key: str | None = Field(
        None, description="for a .pt/.pth holding a dict such as {'state_dict': ..., 'epoch': ...}: the entry with the weights"
    )
    architecture: str = Field(
        description="vgg, wrn, timm:<model name>, or factory:<module>:<function>, "
        "called as function(num_classes=..., **architecture_options)"
    )
    base_width: int = Field(32, gt=0, description="vgg/wrn: channels of stage 1 at width factor 1 (paper: 32)")
    base_depth: int | None = Field(
        None, gt=0, description="vgg/wrn: layers at depth factor 1 (empty: the paper's, 9 for vgg, 18 for wrn)"
    )
    architecture_options: dict[str, Any] = Field(
        default_factory=dict, description="factory architectures: the factory's keyword arguments, a JSON object"
    )
    dataset: str = Field(description="the registered dataset the model was trained on (icc_bench.data.list_datasets())")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="the dataset's options, a JSON object")
    seed: int = Field(0, description="the training seed (repeats of a configuration differ in it)")
    train_accuracy: float | None = Field(None, description="final accuracy on the training set, a fraction in [0, 1]")
    test_accuracy: float | None = Field(None, description="final accuracy on the test set, a fraction in [0, 1]")

    @field_validator("train_accuracy", "test_accuracy")
    @classmethod
    def _fraction(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"accuracy {v:g} is not a fraction in [0, 1] (a percentage? divide it by 100)")
        return v


class Manifest(BaseModel):
    """A manifest file: settings shared by every row, and the rows (``models``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    axes: dict[str, str] = Field(
        default_factory=dict, description="your column -> its axis: one of the eight, or a new snake_case axis"
    )
    constants: dict[str, Any] = Field(
        default_factory=dict, description="a ManifestRow column or one of the eight hyperparameters -> its value for every model"
    )
    rename: dict[str, str] = Field(default_factory=dict, description="your column -> the ManifestRow column it is")
    ignore: list[str] = Field(default_factory=list, description="columns to leave out")
    measure_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-measure settings overrides, as in a population spec: {'c2': {'k': 1}}"
    )
    comments: dict[str, str] = Field(default_factory=dict, description="free text, ignored")
    models: list[dict[str, Any]] = Field(min_length=1, description="one object per model")


# -- reading manifests ---------------------------------------------------------------------------
def read_manifest(path: str | Path) -> Manifest:
    """Read a ``.csv`` or ``.json`` manifest; raise :class:`ManifestError` when it is unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(path, [f"cannot read the manifest ({e.strerror or e})"]) from None
    if path.suffix.lower() == ".json":
        try:
            return Manifest.model_validate(json.loads(text))
        except json.JSONDecodeError as e:
            raise ManifestError(path, [f"not valid JSON ({e})"]) from None
        except ValidationError as e:
            raise ManifestError(path, [f"field '{_loc(err)}': {_msg(err)}" for err in e.errors()]) from None
    if path.suffix.lower() != ".csv":
        raise ManifestError(path, ["a manifest is a .csv or a .json file"])
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    reader = csv.reader(io.StringIO("".join(lines[start:])))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise ManifestError(path, ["no header line with the column names"])
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ManifestError(path, [f"column '{h}' appears twice in the header" for h in twice])
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cells) != len(header):
            raise ManifestError(path, [f"row {len(rows) + 1}: {len(cells)} cells for {len(header)} columns"])
        rows.append({h: c for h, c in zip(header, cells) if c.strip()})  # an empty cell gives no value
    if not rows:
        raise ManifestError(path, ["no model rows below the header"])
    return Manifest(models=rows)


def with_settings(
    manifest: Manifest, source: Path | str, *, axes: dict[str, str] | None = None,
    constants: dict[str, Any] | None = None, rename: dict[str, str] | None = None, ignore: list[str] | None = None,
) -> Manifest:
    """The manifest with settings from the command line; each setting comes from one place only."""
    given = {"axes": axes, "constants": constants, "rename": rename, "ignore": ignore}
    flags = {"axes": "--axes", "constants": "--set", "rename": "--rename", "ignore": "--ignore"}
    both = [k for k, v in given.items() if v and getattr(manifest, k)]
    if both:
        raise ManifestError(source, [f"'{k}' is given both in the manifest and with {flags[k]}; keep one" for k in both])
    return manifest.model_copy(update={k: v for k, v in given.items() if v})


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


def _msg(err: dict) -> str:
    return err["msg"].removeprefix("Value error, ")


class _Problems:
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


# -- checkpoints and architectures ---------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as a state_dict; the message says why and what to do."""


def load_checkpoint(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``: safetensors, or a ``.pt``/``.pth`` read with ``weights_only=True``.

    ``weights_only`` restricts unpickling to tensors and plain containers, so a file that would
    call a function (``os.system``, a class constructor) is refused before anything runs.
    """
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{path.name}: unsupported file type '{suffix}'; save the state_dict as .safetensors or .pt")
    if suffix == ".safetensors":
        if key is not None:
            raise CheckpointError(f"{path.name}: a safetensors file is a flat state_dict; leave checkpoint_key empty")
        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({e})") from None
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (a legacy file is a pickle, which opens with PROTO, 0x80):
    # anything else is not a checkpoint, whatever the unpickler would make of its bytes.
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path.name}: not a checkpoint torch.load can read (neither the zip archive torch.save writes nor a "
            f"pickle; it starts with {head!r}); save the weights with torch.save(model.state_dict(), path)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused is None:  # a damaged file, not a refused object
            raise CheckpointError(
                f"{path.name}: not a checkpoint torch.load can read (its pickle is damaged or not torch's); "
                "save the weights with torch.save(model.state_dict(), path)"
            ) from None
        what = f"it refers to {refused.group(1)}"
        raise CheckpointError(
            f"{path.name}: holds Python objects that torch.load(weights_only=True) refuses to unpickle ({what}); "
            "icc-bench never runs code from a checkpoint: save the weights alone, torch.save(model.state_dict(), path)"
        ) from None
    except Exception as e:  # torch.load raises many types on a file that is not a checkpoint
        raise CheckpointError(f"{path.name}: torch.load cannot read it ({type(e).__name__}: {e})") from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = ", ".join(f"'{k}'" for k in obj) if isinstance(obj, dict) else f"a {type(obj).__name__}"
            raise CheckpointError(f"{path.name}: no entry '{key}' (checkpoint_key); it holds {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name}: holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        entries = ", ".join(f"'{k}'" for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "")
        nested = [k for k, v in obj.items() if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())]
        raise CheckpointError(
            f"{path.name}: not a state_dict: entry '{others[0]}' is a {type(obj[others[0]]).__name__}, not a tensor "
            f"(entries: {entries}); name the entry that holds the state_dict in column checkpoint_key"
            + (f": '{nested[0]}'?" if nested else "")
        )
    return obj


def build_factory_model(name: str, options: dict[str, Any], num_classes: int) -> nn.Module:
    """Build ``factory:<module>:<function>``: ``function(num_classes=num_classes, **options)``.

    The function must be a plain Python function (not a class, not a builtin) with a parameter
    named ``num_classes``: a zoo record names the factory, and this keeps a record from calling an
    arbitrary callable such as ``os.system``. Raises ``ValueError`` with one sentence otherwise.
    """
    from torch import nn

    match = _FACTORY.fullmatch(name)
    if match is None:
        raise ValueError(f"architecture '{name}': write a factory as factory:<module>:<function>, e.g. factory:my_nets:make_net")
    module_name, function_name = match.groups()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # importing runs the module: anything may go wrong there
        raise ValueError(f"architecture '{name}': cannot import module '{module_name}' ({type(e).__name__}: {e}); "
                         "put its folder on PYTHONPATH") from None
    factory = getattr(module, function_name, None)
    if not inspect.isfunction(factory):
        raise ValueError(f"architecture '{name}': module '{module_name}' has no Python function '{function_name}'")
    signature = inspect.signature(factory)
    named = {n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [k for k in options if k not in named and not takes_any]
    if "num_classes" not in named or unknown:
        missing = "a parameter num_classes" if "num_classes" not in named else f"the option '{unknown[0]}'"
        raise ValueError(f"architecture '{name}': {function_name}{signature} does not take {missing}")
    try:
        model = factory(num_classes=num_classes, **options)
    except Exception as e:  # the user's code: report its failure as this row's problem
        raise ValueError(f"architecture '{name}': {function_name}(num_classes={num_classes}, **{options}) raised "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"architecture '{name}': {function_name} returned a {type(model).__name__}, not an nn.Module")
    return model


def build_imported_model(
    arch: ArchitectureSpec, options: dict[str, Any], hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """The untrained network of one imported model: a factory's, or one of ``build_model``'s."""
    from icc_bench.models import build_model

    if arch.name.startswith(FACTORY_PREFIX):
        return build_factory_model(arch.name, options, num_classes)
    if options:
        raise ValueError(f"architecture '{arch.name}': architecture_options are for factory architectures only")
    try:
        return build_model(arch, hp, num_classes, input_shape)
    except ValueError as e:
        if str(e).startswith("unknown architecture"):
            raise ValueError(f"{e}, or factory:<module>:<function> for a network of your own") from None
        raise


def state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """How a checkpoint's state_dict fails an architecture's, in one sentence; None when it fits.

    Names the first key, in the architecture's order, that the checkpoint lacks or holds in
    another shape, or else the first key of the checkpoint the architecture does not have.
    """
    bad = [k for k, v in expected.items() if k not in found or tuple(found[k].shape) != tuple(v.shape)]
    extra = [k for k in found if k not in expected]
    if not bad and not extra:
        return None
    if bad and bad[0] in found:
        k = bad[0]
        message = (f"key '{k}' has shape {tuple(found[k].shape)} in the checkpoint "
                   f"but {tuple(expected[k].shape)} in the architecture")
    elif bad:
        message = f"key '{bad[0]}' of the architecture is missing from the checkpoint"
    else:
        message = f"key '{extra[0]}' of the checkpoint is not in the architecture"
    more = len(bad) + len(extra) - 1
    if more:
        message += f" (and {more} more mismatching key{'s' if more > 1 else ''})"
    if all(k.startswith("module.") for k in found):
        message += "; its keys start with 'module.' (saved from DataParallel): save model.module.state_dict()"
    return f"the state_dict does not fit the architecture: {message}"


def _runs_on(model: nn.Module, state_dict: dict[str, torch.Tensor], dataset) -> str | None:
    """Load the weights and score two training images; None when the output is one score per class
    for each image, else what went wrong."""
    import torch

    try:
        model.load_state_dict(state_dict)
        with torch.no_grad():
            out = model.eval()(dataset.x_train[:2])
    except Exception as e:  # whatever fails here, the model does not run on this dataset
        return (f"the model does not run on the dataset's images {tuple(dataset.input_shape)} "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})")
    expected = (min(2, len(dataset.x_train)), dataset.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        return f"the model outputs {shape} for {expected[0]} images, not one score per class {expected}"
    return None


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


def _check_settings(manifest: Manifest, problems: _Problems) -> None:
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
    if name in _JSON_COLUMNS:
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


def _read_row(manifest: Manifest, number: int, raw: dict[str, Any], problems: _Problems) -> _Row | None:
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
            what = "missing value" if err["type"] == "missing" else f"{_msg(err)} (got {err.get('input')!r})"
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


def _check_ids_and_accuracies(rows: list[_Row], measure_accuracy: bool, problems: _Problems) -> None:
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


def _common_dataset(rows: list[_Row], data_dir: str | Path | None, problems: _Problems):
    """The dataset every row names, loaded, as (spec, ImageDataset); (None, None) when there is none."""
    from icc_bench.data import DataError
    from icc_bench.population import load_job_dataset

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


def _check_checkpoint(r: _Row, folder: Path, dataset, problems: _Problems) -> PlannedModel | None:
    """Read the row's checkpoint and check it fits its architecture and runs on the dataset."""
    from icc_bench.zoo import sha256_file

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
    mismatch = state_dict_mismatch(model.state_dict(), state_dict) or _runs_on(model, state_dict, dataset)
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
    from icc_bench.zoo import sha256_file

    manifest_path, zoo_dir = Path(manifest_path), Path(zoo_dir)
    problems = _Problems()
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


# -- writing -------------------------------------------------------------------------------------
def population_json(plan: ImportPlan, created: str) -> dict[str, Any]:
    """The zoo's ``population.json``: a valid population spec, without the unknown ``schedule``."""
    archs = list(dict.fromkeys(m.architecture for m in plan.models))
    architecture = archs[0] if len(archs) == 1 else ArchitectureSpec(name="mixed: " + ", ".join(a.name for a in archs))
    spec = PopulationSpec(
        name=plan.name,
        description=f"imported by `icc-bench import` from {plan.manifest} on {created}: {len(plan.models)} models "
        f"trained elsewhere, scored on the axes {', '.join(plan.axes) or '(none)'}",
        dataset=plan.dataset, architecture=architecture,
        configs=list(dict.fromkeys(m.hyperparams for m in plan.models)),
        seeds=sorted({m.seed for m in plan.models}), measure_settings=plan.measure_settings,
    )
    spec_json = json.loads(spec.model_dump_json())
    del spec_json["schedule"]  # icc-bench did not train these models and does not know how they were trained
    return spec_json


def write_import(
    plan: ImportPlan, zoo_dir: str | Path, *, data_dir: str | Path | None = None, device: str | None = None,
    measure_accuracy: bool = False, on_model: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Write the zoo of a validated plan into a hidden folder beside ``zoo_dir``, and rename it into
    place once whole. Returns the records written."""
    from icc_bench.population import load_job_dataset
    from icc_bench.train import final_predictions, resolve_device
    from icc_bench.zoo import Zoo, sha256_file

    zoo_dir = Path(zoo_dir)
    dataset = load_job_dataset(plan.dataset, data_dir)
    dev = resolve_device(device)
    data = dataset.to(dev) if measure_accuracy else dataset
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    staging = zoo_dir.parent / f".{zoo_dir.name}.import-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    records = []
    try:
        zoo = Zoo(staging)
        zoo.write_spec(population_json(plan, created))
        for m in plan.models:
            if on_model is not None:
                on_model(m.model_id)
            if sha256_file(m.checkpoint) != m.source_sha256:
                raise ManifestError(plan.manifest, [f"row {m.row} ({m.model_id!r}): {m.checkpoint} changed during the "
                                                    "import; run it again"])
            # Copies: safetensors refuses tensors that share memory (tied weights).
            loaded = load_checkpoint(m.checkpoint, m.checkpoint_key)
            state_dict = {k: v.detach().clone().contiguous() for k, v in loaded.items()}
            model = build_imported_model(
                m.architecture, m.architecture_options, m.hyperparams, dataset.num_classes, dataset.input_shape
            )
            model.load_state_dict(state_dict)
            metrics = {"train_accuracy": m.train_accuracy, "test_accuracy": m.test_accuracy,
                       "train_loss": None, "test_loss": None}
            predictions = None
            if measure_accuracy:  # measured exactly as training measures its models, predictions included
                metrics, predictions = final_predictions(model.to(dev), data)
            record = _record(plan, m, dataset, model.cpu(), metrics, created, f"measured by icc-bench on {dev}"
                             if measure_accuracy else "from the manifest")
            records.append(zoo.write_model(record, state_dict, predictions=predictions))
        os.replace(staging, zoo_dir)  # replaces an empty folder; plan_import refused a non-empty one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return records


def _record(plan: ImportPlan, m: PlannedModel, dataset, model: nn.Module, metrics: dict[str, float | None],
            created: str, accuracies_from: str) -> dict[str, Any]:
    """A record with every key ``population.run_job`` writes (None where an import cannot know it)."""
    from icc_bench.models import count_layers
    from icc_bench.zoo import versions

    # Counted as population.run_job counts: the state_dict without BatchNorm's running statistics.
    parameters = sum(
        v.numel() for k, v in model.state_dict().items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    return {
        "model_id": m.model_id, "population": plan.name, "seed": m.seed,
        "hyperparams": m.hyperparams.model_dump(mode="json"), "architecture": m.architecture.model_dump(mode="json"),
        "dataset": plan.dataset.model_dump(mode="json"), "schedule": None,
        "num_classes": dataset.num_classes, "input_shape": list(dataset.input_shape), "hierarchical": dataset.hierarchical,
        "layers": count_layers(model), "parameters": parameters, "status": "complete",
        "train_accuracy": metrics["train_accuracy"], "train_loss": metrics["train_loss"],
        "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"],
        **({"heldout_accuracy": metrics["heldout_accuracy"]} if "heldout_accuracy" in metrics else {}),
        "epochs_run": None, "reached_loss_stop": None, "train_seconds": None, "device": None, "curve": [],
        "created": created, "versions": versions(),
        # Beyond run_job's keys: what scoring and loading need, and where the model came from.
        "axes": plan.axes, "extra_hyperparams": m.extra_hyperparams, "architecture_options": m.architecture_options,
        "imported": {
            "manifest": str(plan.manifest), "manifest_sha256": plan.manifest_sha256, "row": m.row,
            "manifest_row": m.manifest_row, "checkpoint": str(m.checkpoint.resolve()),
            "checkpoint_sha256": m.source_sha256, "checkpoint_key": m.checkpoint_key, "accuracies": accuracies_from,
            "manifest_accuracies": {"train_accuracy": m.train_accuracy, "test_accuracy": m.test_accuracy},
        },
    }


def import_manifest(
    manifest_path: str | Path, zoo_dir: str | Path, *, axes: dict[str, str] | None = None,
    constants: dict[str, Any] | None = None, rename: dict[str, str] | None = None, ignore: list[str] | None = None,
    measure_accuracy: bool = False, data_dir: str | Path | None = None, device: str | None = None,
    on_row: Callable[[str], None] | None = None, on_model: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Read, validate, write: the whole of ``icc-bench import``. Returns the records written."""
    manifest = with_settings(
        read_manifest(manifest_path), manifest_path, axes=axes, constants=constants, rename=rename, ignore=ignore
    )
    plan = plan_import(manifest, manifest_path, zoo_dir, data_dir=data_dir, measure_accuracy=measure_accuracy, on_row=on_row)
    return write_import(plan, zoo_dir, data_dir=data_dir, device=device, measure_accuracy=measure_accuracy, on_model=on_model)


# -- the template --------------------------------------------------------------------------------
_TEMPLATE_AXES = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay", "opt": "optimizer",
                  "drop": "dropout", "aug": "augmentation"}
_TEMPLATE_ROWS = [
    {"model_id": "run_00", "checkpoint": "checkpoints/run_00.pt", "lr": 0.1, "bs": 128, "wd": 0.0005, "opt": "sgd",
     "drop": 0.0, "aug": True, "train_accuracy": 1.0, "test_accuracy": 0.912},
    {"model_id": "run_01", "checkpoint": "checkpoints/run_01.safetensors", "lr": 0.01, "bs": 128, "wd": 0.0,
     "opt": "adam", "drop": 0.2, "aug": False, "train_accuracy": 0.998, "test_accuracy": 0.803},
]
_TEMPLATE_CONSTANTS = {"architecture": "vgg", "base_width": 32, "dataset": "cifar10", "dataset_options": {}}


def _column_notes() -> dict[str, str]:
    notes = {name: field.description or "" for name, field in ManifestRow.model_fields.items()}
    notes.update({col: f"your hyperparameter column, mapped onto the axis {axis}" for col, axis in _TEMPLATE_AXES.items()})
    return notes


def template_csv() -> str:
    """An example CSV manifest, every column explained in a comment line."""
    columns = ["model_id", "checkpoint", "architecture", "base_width", "dataset", "dataset_options", *_TEMPLATE_AXES,
               "seed", "train_accuracy", "test_accuracy"]
    notes = _column_notes()
    axes = ",".join(f"{c}={a}" for c, a in _TEMPLATE_AXES.items())
    out = io.StringIO()
    out.write("# icc-bench import manifest: one row per trained model; lines starting with # are comments.\n"
              f"# Import with: icc-bench import THIS_FILE --to runs/my_population --axes {axes}\n"
              "# (width and depth are 1 unless mapped or set, e.g. --set width=1.5; a column mapped onto a new name,\n"
              "#  e.g. --axes mom=momentum, is an axis beyond the eight; --set NAME=VALUE replaces a column all rows share;\n"
              "#  --rename ckpt=checkpoint reads your own column names; --ignore COL leaves a column out)\n")
    for column in columns:
        out.write(f"# {column}: {notes[column]}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in _TEMPLATE_ROWS:
        full = {**row, **_TEMPLATE_CONSTANTS, "seed": 0}
        writer.writerow([json.dumps(full[c]) if c in _JSON_COLUMNS else full[c] for c in columns])
    return out.getvalue()


def template_json() -> str:
    """An example JSON manifest; its ``comments`` explain every column and setting."""
    notes_of_row = _column_notes()
    notes = {k: notes_of_row[k] for k in ("model_id", "architecture", "base_width", "dataset", "dataset_options", "seed",
                                   "train_accuracy", "test_accuracy", *_TEMPLATE_AXES)}
    notes["ckpt"] = "the checkpoint column under your own name (see rename): " + notes_of_row["checkpoint"]
    notes["mom"] = "your hyperparameter column, mapped onto momentum: an axis beyond the eight"
    notes.update({name: field.description or "" for name, field in Manifest.model_fields.items()
                  if name not in ("comments", "models")})
    rows = [{**{("ckpt" if k == "checkpoint" else k): v for k, v in row.items()}, "mom": mom, "seed": 0, "notes": "free text"}
            for row, mom in zip(_TEMPLATE_ROWS, (0.9, 0.0))]
    manifest = {
        "comments": notes,
        "axes": {**_TEMPLATE_AXES, "mom": "momentum"},
        "constants": {**_TEMPLATE_CONSTANTS, "width": 1.0, "depth": 1.0},
        "rename": {"ckpt": "checkpoint"},
        "ignore": ["notes"],
        "measure_settings": {},
        "models": rows,
    }
    return json.dumps(manifest, indent=2) + "\n"


def write_template(path: str | Path | None) -> list[Path]:
    """Write the CSV template, the JSON one, or both (``path`` None: ``manifest-template.csv/.json``)."""
    targets = [Path("manifest-template.csv"), Path("manifest-template.json")] if path is None else [Path(path)]
    for target in targets:
        if target.suffix.lower() not in (".csv", ".json"):
            raise SpecError(f"{target}: a template is a .csv or a .json file; name it so")
        if target.exists():
            raise SpecError(f"{target}: already exists; the template never overwrites a file, choose another path")
    for target in targets:
        target.write_text(template_csv() if target.suffix.lower() == ".csv" else template_json())
    return targets


# -- the command ---------------------------------------------------------------------------------
def _pairs(text: str | None, flag: str) -> dict[str, str]:
    """``"a=b,c"`` -> ``{"a": "b", "c": "c"}``."""
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            if not key.strip():
                raise SpecError(f"{flag} {text!r}: '{item}' names no column; write COLUMN=NAME")
            out[key.strip()] = value.strip() or key.strip()
    return out


def _constants(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise SpecError(f"--set {item!r}: write NAME=VALUE, e.g. --set optimizer=sgd")
        out[name.strip()] = value
    return out


def cmd_import(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icc_bench.cli import UserError, console

    if args.template is not None:
        for path in write_template(args.template or None):
            console.print(f"written: {path}", highlight=False)
        return 0
    if args.manifest is None or args.to is None:
        raise UserError("icc-bench import needs a MANIFEST and --to ZOO_DIR (or --template to write an example manifest)")
    manifest = with_settings(
        read_manifest(args.manifest), args.manifest, axes=_pairs(args.axes, "--axes"), constants=_constants(args.set),
        rename=_pairs(args.rename, "--rename"), ignore=list(_pairs(args.ignore, "--ignore")),
    )
    n = len(manifest.models)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=True) as progress:
        checking = progress.add_task("validating", total=n, info="")
        plan = plan_import(manifest, args.manifest, args.to, data_dir=args.data_dir, measure_accuracy=args.measure_accuracy,
                           on_row=lambda model_id: progress.update(checking, advance=1, info=model_id))
        writing = progress.add_task("writing", total=n, info="")
        write_import(plan, args.to, data_dir=args.data_dir, device=args.device, measure_accuracy=args.measure_accuracy,
                     on_model=lambda model_id: progress.update(writing, advance=1, info=model_id))
    source = "measured on the dataset" if args.measure_accuracy else "from the manifest"
    console.print(
        f"imported {len(plan.models)} models into {args.to} (accuracies {source}; scored on the axes "
        f"{', '.join(plan.axes) or '(none)'}); next: icc-bench evaluate {args.to}", highlight=False,
    )
    return 0


def add_import_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``icc-bench import`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "import", help="turn checkpoints trained elsewhere, listed in a manifest, into a zoo",
        description="Import a population trained elsewhere from a CSV or JSON manifest, one row per model; "
        "`icc-bench import --template` writes an annotated example.",
    )
    p.add_argument("manifest", nargs="?", metavar="MANIFEST", help="the manifest, .csv or .json")
    p.add_argument("--to", metavar="ZOO_DIR", help="the new zoo folder (its name is the population's name)")
    p.add_argument("--axes", metavar="COL=AXIS,...",
                   help="your hyperparameter columns and their axes, e.g. lr=learning_rate,bs=batch_size,mom=momentum")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a value every model shares: a manifest column or one of the eight hyperparameters (repeatable)")
    p.add_argument("--rename", metavar="COL=NAME,...",
                   help="your names for the columns icc-bench reads, e.g. ckpt=checkpoint,acc=test_accuracy")
    p.add_argument("--ignore", metavar="COL,...", help="columns to leave out")
    p.add_argument("--measure-accuracy", action="store_true",
                   help="measure train and test accuracy on the dataset instead of reading them")
    p.add_argument("--template", nargs="?", const="", default=None, metavar="PATH",
                   help="write an example manifest (.csv or .json; default: both, as manifest-template.*) and exit")
    p.add_argument("--data-dir", default=None, help="local folder with CIFAR in its python layout (default: $ICC_BENCH_DATA)")
    p.add_argument("--device", default="auto", help="for --measure-accuracy: auto (CUDA when present), cpu, cuda, ...")
    p.set_defaults(func=cmd_import)
    return p
