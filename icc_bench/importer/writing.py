"""Writing a validated import: the zoo, whole or not at all."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.config import ArchitectureSpec, PopulationSpec
from icc_bench.files import sha256_file
from icc_bench.importer.checkpoints import build_imported_model, load_checkpoint
from icc_bench.importer.manifest import ManifestError, read_manifest, with_settings
from icc_bench.importer.validation import ImportPlan, PlannedModel, plan_import

if TYPE_CHECKING:
    from torch import nn


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
    from icc_bench.data.cache import load_job_dataset
    from icc_bench.device import resolve_device
    from icc_bench.train import final_predictions
    from icc_bench.zoo import Zoo

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
    """The record of one imported model: the :class:`~icc_bench.record.ModelRecord` training writes,
    None where an import cannot know a value, and the fields only an import has."""
    from icc_bench.models import count_layers
    from icc_bench.record import ModelRecord, count_parameters
    from icc_bench.zoo import versions

    return ModelRecord(
        model_id=m.model_id, population=plan.name, seed=m.seed,
        hyperparams=m.hyperparams.model_dump(mode="json"), architecture=m.architecture.model_dump(mode="json"),
        dataset=plan.dataset.model_dump(mode="json"), schedule=None,
        num_classes=dataset.num_classes, input_shape=list(dataset.input_shape), hierarchical=dataset.hierarchical,
        layers=count_layers(model), parameters=count_parameters(model.state_dict()), status="complete",
        train_accuracy=metrics["train_accuracy"], train_loss=metrics["train_loss"],
        test_accuracy=metrics["test_accuracy"], test_loss=metrics["test_loss"],
        **({"heldout_accuracy": metrics["heldout_accuracy"]} if "heldout_accuracy" in metrics else {}),
        epochs_run=None, reached_loss_stop=None, train_seconds=None, device=None, curve=[],
        created=created, versions=versions(),
        axes=plan.axes, extra_hyperparams=m.extra_hyperparams, architecture_options=m.architecture_options,
        imported={
            "manifest": str(plan.manifest), "manifest_sha256": plan.manifest_sha256, "row": m.row,
            "manifest_row": m.manifest_row, "checkpoint": str(m.checkpoint.resolve()),
            "checkpoint_sha256": m.source_sha256, "checkpoint_key": m.checkpoint_key, "accuracies": accuracies_from,
            "manifest_accuracies": {"train_accuracy": m.train_accuracy, "test_accuracy": m.test_accuracy},
        },
    ).to_json()


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
