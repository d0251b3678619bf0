"""The manifest of ``icc-bench import``: its schema (:class:`ManifestRow`, :class:`Manifest`), reading
a CSV or JSON file, and the settings the command line adds (see :mod:`icc_bench.importer`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from icc_bench.config import SpecError

#: Columns whose cells are JSON objects.
JSON_COLUMNS = ("architecture_options", "dataset_options")


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
            raise ManifestError(path, [f"field '{error_location(err)}': {error_message(err)}" for err in e.errors()]) from None
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


def error_location(err: dict) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


def error_message(err: dict) -> str:
    return err["msg"].removeprefix("Value error, ")
