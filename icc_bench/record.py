"""The record of one model, as training and ``icc-bench import`` hand it to the zoo.

One schema for both writers: :class:`ModelRecord` lists every field, in the order the record's
JSON keeps them. Training fills each one (``icc_bench.population.job_result``); the importer fills
them too, ``None`` where an import cannot know a value (the schedule, the losses, the curve), and
adds what only an imported model has (``axes``, ``extra_hyperparams``, ``architecture_options``,
``imported``). A field left unset is not written: a trained model's record has no ``imported``
entry (which is how the zoo tells them apart), a model without a held-out split no
``heldout_accuracy``.

:meth:`icc_bench.zoo.Zoo.write_model` adds the rest: the schema number, the file names and the
sha256 of each file, and the record's own seal.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

#: State-dict entries that are statistics, not parameters (BatchNorm's running averages).
_NOT_PARAMETERS = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(state_dict: dict[str, torch.Tensor]) -> int:
    """The number of parameters: every state-dict entry but BatchNorm's running statistics."""
    return sum(v.numel() for k, v in state_dict.items() if not k.endswith(_NOT_PARAMETERS))


class ModelRecord(BaseModel):
    """Everything a zoo records about one model (before the zoo adds its files and hashes)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    population: str
    seed: int
    hyperparams: dict[str, Any]  # HyperParams as JSON: the eight axes
    architecture: dict[str, Any]  # ArchitectureSpec as JSON
    dataset: dict[str, Any]  # DatasetSpec as JSON
    schedule: dict[str, Any] | None  # Schedule as JSON; None for an imported model
    num_classes: int
    input_shape: list[int]
    hierarchical: bool
    layers: int  # conv + linear layers: the paper's depth count
    parameters: int  # count_parameters of the final state_dict
    status: str
    train_accuracy: float | None
    train_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    heldout_accuracy: float | None = None  # only where the dataset has a held-out split
    epochs_run: int | None
    reached_loss_stop: bool | None
    train_seconds: float | None
    device: str | None
    curve: list[dict[str, Any]]  # one EpochStats per epoch, as a dict
    created: str  # ISO 8601, UTC
    versions: dict[str, str]
    # Only an imported model has these (icc_bench.importer).
    axes: list[str] | None = None  # the declared axes: the eight in table order, then new ones
    extra_hyperparams: dict[str, Any] | None = None  # values of the axes beyond the eight
    architecture_options: dict[str, Any] | None = None  # a factory's keyword arguments
    imported: dict[str, Any] | None = None  # the manifest row and checkpoint it came from

    def to_json(self) -> dict[str, Any]:
        """The record as the zoo writes it, fields left unset left out. Python mode, not pydantic's
        JSON mode, which would write a diverged model's NaN loss as null."""
        return self.model_dump(exclude_unset=True)
