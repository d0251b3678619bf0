"""``icc-bench import --template``: example manifests, every column explained."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from icc_bench.config import SpecError
from icc_bench.importer.manifest import JSON_COLUMNS, Manifest, ManifestRow


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
        writer.writerow([json.dumps(full[c]) if c in JSON_COLUMNS else full[c] for c in columns])
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
