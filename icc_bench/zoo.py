"""The zoo on disk: one safetensors checkpoint and one JSON record per model.

Layout of ``<runs>/<population>/``::

    population.json                 the spec the zoo was trained from (self-describing zoo)
    models/<model_id>.safetensors   final weights (never pickle)
    models/<model_id>.json          the record: hyperparameters, curve, metrics, sha256, versions
    models/<model_id>@<epoch>.safetensors   optional snapshots (``save_epochs``), listed in the record
    models/<model_id>.predictions.safetensors   predicted class and label of every test (and held-out)
                                    image, int16, listed in the record with its sha256

Every file is written to a temporary name in the same folder and renamed into place, and the record
is written last: a record on disk means its checkpoints are whole. A killed run therefore leaves
only whole models, plus perhaps an orphan checkpoint that the next run overwrites. Loading verifies
the checkpoint's sha256 against the record and refuses a mismatch.

Record and checkpoint vouch for each other
------------------------------------------
The record holds the checkpoint's sha256 (and those of its snapshots and predictions file); the
checkpoint holds the record's: ``record_sha256``, the sha256 of the record's canonical JSON (sorted
keys, no spaces) without ``record_sha256`` itself, without ``checkpoint_sha256``, which cannot be in
it (the checkpoint's bytes, metadata included, are hashed after the metadata is written), and
without the clock readings (``created``, ``train_seconds``, each epoch's ``seconds``): a rerun of the
same training then writes the same checkpoint bytes, as before the seal. It sits
in the checkpoint's single ``icc_bench`` metadata entry, and the record repeats it so that a reader
can tell which side changed. Editing a record (an accuracy, the architecture) is therefore refused
by every read that matters: :meth:`Zoo.records` and :meth:`Zoo.read_verified_record` compare the
record with the checkpoint's header (a few hundred bytes read, nothing hashed), and loading weights
also hashes the whole checkpoint. Hand-edited files are refused with one sentence naming the file;
nothing is "repaired", because a record is only as good as the training run that wrote it.

Zoos written before records were sealed (no ``record_sha256`` in the checkpoint's metadata) are
read as before, with one warning per zoo and process (:class:`ZooWarning`) saying that their records
are not tamper-evident; a record that claims a seal its checkpoint lacks is refused, so removing the
seal is no way around it.

Factory architectures (``factory:<module>:<function>``, written by ``icc-bench import``) import a
module the record names. :meth:`Zoo.load_model` does that only for a record that ``icc-bench import``
wrote (it has an ``imported`` entry, covered by the seal) and only when the caller allows that very
factory again (``allow_factories``, the CLI's ``--allow-factory module:function``): a zoo received
from elsewhere cannot make icc-bench import a module by naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.files import atomic_write_json, sha256_file, temp_beside, umask
from icc_bench.models import build_model
from icc_bench.models.factory import FACTORY_PREFIX, build_factory_model
from icc_bench.version import __version__

RECORD_SCHEMA = 1


class ZooError(RuntimeError):
    """A zoo that cannot be read as asked; the message names the file and what to do."""


class ZooWarning(UserWarning):
    """A zoo read without a check it predates (records written before they were sealed)."""


#: The record fields its own sha256 does not cover: itself, and the checkpoint's sha256 (the
#: checkpoint holds the record's sha256 in its metadata, so its bytes are hashed after).
UNSEALED_FIELDS = ("record_sha256", "checkpoint_sha256")
#: Clock readings, left out of the seal too: they differ between two runs of the same training,
#: and the seal is in the checkpoint, whose sha256 must stay that of the weights (a rerun writes
#: the same bytes; the results store keys values by them). Nothing is computed from them.
CLOCK_FIELDS = ("created", "train_seconds")
CURVE_CLOCK_FIELDS = ("seconds",)
_warned_unsealed: set[Path] = set()


def record_sha256(record: dict[str, Any]) -> str:
    """The sha256 of ``record``'s canonical JSON (sorted keys, no whitespace) without
    :data:`UNSEALED_FIELDS` and the clock readings (:data:`CLOCK_FIELDS`, and
    :data:`CURVE_CLOCK_FIELDS` in each epoch of ``curve``); the same for the dict written and the
    dict read back."""
    sealed = {k: v for k, v in record.items() if k not in UNSEALED_FIELDS + CLOCK_FIELDS}
    if isinstance(sealed.get("curve"), list):
        sealed["curve"] = [
            {k: v for k, v in epoch.items() if k not in CURVE_CLOCK_FIELDS} if isinstance(epoch, dict) else epoch
            for epoch in sealed["curve"]
        ]
    canonical = json.dumps(sealed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``icc_bench`` metadata of a safetensors file, from its header alone: 8 bytes of
    little-endian header length, then the JSON header (no tensor is read, nothing is hashed)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100 * 2**20:  # safetensors' own limit on a header is 100 MB
                raise ValueError(f"a header of {size} bytes")
            header = json.loads(f.read(size))
        return json.loads((header.get("__metadata__") or {}).get("icc_bench", "{}"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, AttributeError) as e:
        raise ZooError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); it was damaged: delete it and its record to retrain that model") from None


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Save with safetensors through a temporary file; return the sha256 of the bytes on disk."""
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        # save_file recreates the file 0600; a zoo on a shared filesystem is read by the group.
        os.chmod(tmp, 0o666 & ~umask())
        digest = sha256_file(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def versions() -> dict[str, str]:
    return {"icc_bench": __version__, "torch": torch.__version__, "python": platform.python_version()}


class Zoo:
    """A population's folder of trained models."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.models_dir = self.root / "models"

    # -- paths ---------------------------------------------------------------------------------
    def record_path(self, model_id: str) -> Path:
        return self.models_dir / f"{model_id}.json"

    def checkpoint_path(self, model_id: str, epoch: int | None = None) -> Path:
        suffix = "" if epoch is None else f"@{epoch}"
        return self.models_dir / f"{model_id}{suffix}.safetensors"

    def predictions_path(self, model_id: str) -> Path:
        return self.models_dir / f"{model_id}.predictions.safetensors"

    # -- writing -------------------------------------------------------------------------------
    def write_spec(self, spec_json: dict[str, Any]) -> None:
        atomic_write_json(self.root / "population.json", spec_json)

    def write_model(
        self,
        record: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        snapshots: dict[int, dict[str, torch.Tensor]] | None = None,
        predictions: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> dict[str, Any]:
        """Write checkpoints (and the predictions file, when given), then the record with their
        sha256; return the record written.

        ``predictions`` maps a split ("test", "heldout") to (predicted classes, labels), each (n,)
        int16: the file stores them as ``<split>`` and ``<split>_labels``.
        """
        model_id = record["model_id"]
        record = {k: v for k, v in record.items() if k not in UNSEALED_FIELDS}
        record["schema"] = RECORD_SCHEMA
        record["checkpoint"] = self.checkpoint_path(model_id).name
        record["snapshots"] = {
            str(epoch): {
                "checkpoint": self.checkpoint_path(model_id, epoch).name,
                "sha256": _atomic_save_tensors(
                    self.checkpoint_path(model_id, epoch), sd,
                    {"icc_bench": json.dumps({"model_id": model_id, "format": "state_dict", "epoch": epoch})},
                ),
            }
            for epoch, sd in sorted((snapshots or {}).items())
        }
        if predictions:
            tensors = {}
            for split, (predicted, labels) in sorted(predictions.items()):
                tensors[split] = predicted.to("cpu", torch.int16)
                tensors[f"{split}_labels"] = labels.to("cpu", torch.int16)
            record["predictions"] = {
                "file": self.predictions_path(model_id).name,
                "sha256": _atomic_save_tensors(
                    self.predictions_path(model_id), tensors,
                    {"icc_bench": json.dumps({"model_id": model_id, "format": "predictions"})},
                ),
                "splits": {split: int(predicted.numel()) for split, (predicted, _) in sorted(predictions.items())},
            }
        record.setdefault("versions", versions())
        record = json.loads(json.dumps(record))  # as it will read back (tuples are lists, keys strings)
        digest = record_sha256(record)
        # One metadata key only: safetensors writes its metadata map in hash order, so several keys
        # would make identical weights hash differently from one save to the next.
        meta = {"icc_bench": json.dumps({"model_id": model_id, "format": "state_dict", "record_sha256": digest})}
        record["checkpoint_sha256"] = _atomic_save_tensors(self.checkpoint_path(model_id), state_dict, meta)
        record["record_sha256"] = digest
        atomic_write_json(self.record_path(model_id), record)
        return record

    def remove_partial_files(self, model_id: str | None = None) -> None:
        """Delete temporary files a killed writer left behind (never whole records or checkpoints):
        those of ``model_id``, or all of them. Only a process that holds the model's claim may
        remove its files, since another process may be writing them (``icc_bench.claims``)."""
        if not self.models_dir.is_dir():
            return
        if model_id is None:
            patterns = [".*.tmp"]
        else:
            names = [self.record_path(model_id).name, self.checkpoint_path(model_id).name, self.predictions_path(model_id).name]
            patterns = [f".{name}.*.tmp" for name in names] + [f".{model_id}@*.safetensors.*.tmp"]
        for pattern in patterns:
            for tmp in self.models_dir.glob(pattern):
                tmp.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------------
    def has(self, model_id: str) -> bool:
        return self.record_path(model_id).is_file()

    def read_record(self, model_id: str) -> dict[str, Any]:
        path = self.record_path(model_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ZooError(f"{path}: no record for model '{model_id}' in this zoo; train or import it first") from None
        except json.JSONDecodeError as e:
            raise ZooError(f"{path}: the record is not valid JSON ({e}); delete it to retrain that model") from None

    def model_ids(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(p.stem for p in self.models_dir.glob("*.json") if not p.name.startswith("."))

    def read_verified_record(self, model_id: str) -> dict[str, Any]:
        """The record, checked against the ``record_sha256`` its checkpoint vouches for (the
        checkpoint's header only: cheap); raises ZooError naming the file on a mismatch or a
        missing checkpoint. See the module docstring for zoos written before records were sealed."""
        record = self.read_record(model_id)
        path, record_path = self.checkpoint_path(model_id), self.record_path(model_id)
        try:
            vouched = read_metadata(path).get("record_sha256")
        except FileNotFoundError:
            raise ZooError(f"{path}: checkpoint missing although its record exists; delete {record_path} to retrain it") from None
        if vouched is None:
            if "record_sha256" in record:
                raise ZooError(
                    f"{record_path}: the record is sealed but its checkpoint {path.name} carries no seal, so the checkpoint "
                    f"was replaced and the pair is refused: restore both files, or delete them to retrain that model"
                )
            if self.root.resolve() not in _warned_unsealed:
                _warned_unsealed.add(self.root.resolve())
                warnings.warn(
                    f"{self.root}: records written before icc-bench sealed them (no record_sha256 in the checkpoints); "
                    "they are read as they are, without the check that they were not edited since",
                    ZooWarning, stacklevel=2,
                )
            return record
        found = record_sha256(record)
        if found != vouched:
            how = ("the record was edited after it was written" if record.get("record_sha256") != found
                   else "the record was rewritten, or the checkpoint belongs to another record")
            raise ZooError(
                f"{record_path}: the record does not match the sha256 its checkpoint {path.name} vouches for "
                f"(expected {vouched[:12]}..., found {found[:12]}...): {how}, so it is refused; restore both files, "
                "or delete them to retrain that model"
            )
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, each verified against its checkpoint (:meth:`read_verified_record`)."""
        for model_id in self.model_ids():
            yield self.read_verified_record(model_id)

    def read_spec(self) -> dict[str, Any] | None:
        path = self.root / "population.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def verify(self, model_id: str, epoch: int | None = None) -> Path:
        """Check a checkpoint against the sha256 in its (verified) record, hashing the whole file;
        return its path or raise ZooError."""
        record = self.read_verified_record(model_id)
        if epoch is None:
            expected = record.get("checkpoint_sha256")
        else:
            snap = record.get("snapshots", {}).get(str(epoch))
            if snap is None:
                saved = ", ".join(record.get("snapshots", {})) or "none"
                raise ZooError(f"model '{model_id}' has no checkpoint saved at epoch {epoch} (saved: {saved})")
            expected = snap["sha256"]
        path = self.checkpoint_path(model_id, epoch)
        if not path.is_file():
            raise ZooError(f"{path}: checkpoint missing although its record exists; delete {self.record_path(model_id)} to retrain it")
        actual = sha256_file(path)
        if actual != expected:
            raise ZooError(
                f"{path}: checkpoint does not match the sha256 in its record (expected {expected[:12]}..., "
                f"found {actual[:12]}...); it was altered or corrupted, so it is refused: delete "
                f"{self.record_path(model_id)} and the checkpoint to retrain it"
            )
        return path

    def check_model(self, model_id: str) -> None:
        """Verify everything a model's evaluation reads: the record against its checkpoint's seal,
        the whole checkpoint and the predictions file against their sha256 (snapshots are checked
        when an analysis loads them). Raises ZooError naming the file."""
        self.verify(model_id)
        self.read_predictions(model_id, tensors=False)

    def read_predictions(self, model_id: str, *, tensors: bool = True) -> dict[str, tuple[Any, Any]] | None:
        """The verified predictions of a model: split -> (predicted classes, labels) as int16 numpy
        arrays; None when the record has none (a zoo trained before they were kept, or imported).
        ``tensors=False`` checks the file and returns ``{}`` without reading the arrays."""
        record = self.read_verified_record(model_id)
        entry = record.get("predictions")
        if not entry:
            return None
        path = self.models_dir / entry["file"]
        if not path.is_file():
            raise ZooError(f"{path}: predictions file missing although its record lists it; delete {self.record_path(model_id)} to retrain that model")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ZooError(
                f"{path}: predictions do not match the sha256 in their record (expected {entry['sha256'][:12]}..., "
                f"found {actual[:12]}...); they were altered or corrupted: delete {self.record_path(model_id)} to retrain that model"
            )
        if not tensors:  # checked only
            return {}
        loaded = load_file(path)
        return {split: (loaded[split].numpy(), loaded[f"{split}_labels"].numpy()) for split in entry["splits"]}

    def load_state_dict(self, model_id: str, epoch: int | None = None, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The verified weights of a model (or of one of its snapshots)."""
        path = self.verify(model_id, epoch)
        return load_file(path, device=str(device))

    def load_model(
        self, model_id: str, *, epoch: int | None = None, device: str | torch.device = "cpu",
        allow_factories: Collection[str] = (),
    ):
        """Rebuild a model from its verified record and load its verified weights: ``(model, record)``,
        eval mode. A ``factory:<module>:<function>`` architecture is built only when the record was
        written by ``icc-bench import`` and ``allow_factories`` holds ``<module>:<function>``."""
        record = self.read_verified_record(model_id)
        arch = ArchitectureSpec.model_validate(record["architecture"])
        if arch.name.startswith(FACTORY_PREFIX):  # a user's own network, imported with icc-bench import
            factory = arch.name.removeprefix(FACTORY_PREFIX)
            if "imported" not in record:
                raise ZooError(
                    f"{self.record_path(model_id)}: architecture '{arch.name}' is one only `icc-bench import` writes, and "
                    "this record was not imported, so it is refused: icc-bench never imports a module that a record alone names"
                )
            if factory not in allow_factories:
                raise ZooError(
                    f"{self.record_path(model_id)}: model '{model_id}' is built by importing {factory.split(':')[0]!r}, which "
                    f"icc-bench does only when you allow it again: add --allow-factory {factory} if you trust that module"
                )

            model = build_factory_model(arch.name, record.get("architecture_options", {}), record["num_classes"])
        else:
            hp = HyperParams.model_validate(record["hyperparams"])
            model = build_model(arch, hp, record["num_classes"], tuple(record["input_shape"]))
        model.load_state_dict(self.load_state_dict(model_id, epoch, device="cpu"))
        return model.to(device).eval(), record
