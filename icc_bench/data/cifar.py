"""CIFAR-10 and CIFAR-100 read from a local folder; nothing is ever downloaded.

Three datasets (the paper's three, SPEC §4):

- ``cifar10``: 10 classes, flat.
- ``cifar100``: the 100 fine labels, flat.
- ``cifar100_coarse``: trained on the 20 coarse labels (superclasses); the fine labels are kept as
  the subclasses, and ``fine_to_coarse`` is read off the data (every fine label must always come
  with the same coarse label).

The data folder is the ``data_dir`` argument, else the ``ICC_BENCH_DATA`` environment variable, and
must hold the "python version" archives extracted as published (Krizhevsky, 2009,
https://www.cs.toronto.edu/~kriz/cifar.html)::

    <data_dir>/cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch, batches.meta}
    <data_dir>/cifar-100-python/{train, test, meta}

Those files are pickles, and unpickling can run arbitrary code. They are read with an unpickler that
resolves only the few globals a CIFAR batch contains (numpy array and dtype reconstruction, and
``_codecs.encode`` for byte strings written at protocol 2) and refuses anything else, so a tampered
file fails with a DataError instead of running. Keys are read with ``encoding="bytes"`` as in the
official loader; byte and str keys are both accepted.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from icc_bench.data.dataset import DataError, DatasetOptions, ImageDataset, register_dataset

DATA_DIR_ENV = "ICC_BENCH_DATA"

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch", "batches.meta")
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")

_IMAGE_SHAPE = (3, 32, 32)  # each row of b"data" is 1024 red, then 1024 green, then 1024 blue bytes


class CifarOptions(DatasetOptions):
    """CIFAR datasets take only the common options (subsampling)."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name, mapped to the objects they resolve to.

    The published files name ``numpy.core.multiarray``; numpy >= 2 writes ``numpy._core``, and
    protocol 5 uses ``_frombuffer``. All names resolve to numpy's current module, so loading never
    imports the deprecated ``numpy.core`` alias.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`_allowed_globals` and refuses every other global."""

    _allowed = _allowed_globals()

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refusing to unpickle the global {module}.{name}, which no CIFAR file contains; "
                f"replace this file with one from the official archive."
            ) from None


def resolve_data_dir(data_dir: Path | None, dataset: str) -> Path:
    """``data_dir``, else ``$ICC_BENCH_DATA``; neither is a DataError that says how to give one."""
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    raise DataError(
        f"Dataset {dataset!r} is read from a local folder and never downloaded: "
        f"pass --data-dir or set {DATA_DIR_ENV} to the folder that holds {CIFAR10_FOLDER}/ or {CIFAR100_FOLDER}/."
    )


def _dataset_folder(data_dir: Path | None, dataset: str, folder_name: str, files: tuple[str, ...]) -> Path:
    root = resolve_data_dir(data_dir, dataset)
    folder = root / folder_name
    if not folder.is_dir():
        inside = f"; {root} itself looks like that folder, so pass its parent" if (root / files[0]).is_file() else ""
        raise DataError(
            f"{folder}: no such folder; dataset {dataset!r} expects the CIFAR python version there "
            f"({', '.join(files)}), extracted as published{inside}."
        )
    return folder


def _read_pickle(path: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """The dict in one CIFAR pickle, with str keys."""
    if not path.is_file():
        raise DataError(f"{path}: missing; {path.parent} must hold the CIFAR files {', '.join(files)}.")
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle can fail in many ways (EOF, bad opcode, bad array state)
        raise DataError(
            f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e}); replace it with the file from the official archive."
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not the dict of a CIFAR batch; replace the file.")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _entry(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise DataError(f"{path}: no {key!r} entry (it has {sorted(batch)}); replace it with the file from the official archive.")
    return batch[key]


def _images(batch: dict[str, Any], path: Path) -> Tensor:
    """(N, 3, 32, 32) float32 in [0, 1] from the (N, 3072) uint8 ``data`` entry."""
    data = _entry(batch, "data", path)
    n_values = int(np.prod(_IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_values:
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is a {described}, not a uint8 array of shape (N, {n_values}); replace the file.")
    return torch.from_numpy(data.reshape(-1, *_IMAGE_SHAPE).astype(np.float32) / 255.0)


def _labels(batch: dict[str, Any], key: str, path: Path, n_images: int, n_classes: int) -> Tensor:
    try:
        labels = np.asarray(_entry(batch, key, path), dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {key!r} is not a list of integer labels; replace the file.") from None
    if labels.shape != (n_images,):
        raise DataError(f"{path}: {key!r} holds {labels.size} labels for {n_images} images; replace the file.")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path}: {key!r} has labels outside [0, {n_classes}) (the meta file names {n_classes}).")
    return torch.from_numpy(labels)


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    names = _entry(meta, key, path)
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: {key!r} is not a list of class names; replace the file.")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def build_cifar10(options: CifarOptions, data_dir: Path | None) -> ImageDataset:
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes, pixels in [0, 1]."""
    folder = _dataset_folder(data_dir, "cifar10", CIFAR10_FOLDER, CIFAR10_FILES)
    meta_path = folder / "batches.meta"
    names = _names(_read_pickle(meta_path, CIFAR10_FILES), "label_names", meta_path)
    xs, ys = [], []
    for file in (*CIFAR10_TRAIN_FILES, "test_batch"):
        path = folder / file
        batch = _read_pickle(path, CIFAR10_FILES)
        x = _images(batch, path)
        xs.append(x)
        ys.append(_labels(batch, "labels", path, x.shape[0], len(names)))
    return ImageDataset(
        name="cifar10",
        x_train=torch.cat(xs[:-1]),
        y_train=torch.cat(ys[:-1]),
        x_test=xs[-1],
        y_test=ys[-1],
        num_classes=len(names),
        class_names=names,
    )


def _read_cifar100(data_dir: Path | None, dataset: str) -> dict[str, Any]:
    folder = _dataset_folder(data_dir, dataset, CIFAR100_FOLDER, CIFAR100_FILES)
    meta_path = folder / "meta"
    meta = _read_pickle(meta_path, CIFAR100_FILES)
    out: dict[str, Any] = {
        "fine_names": _names(meta, "fine_label_names", meta_path),
        "coarse_names": _names(meta, "coarse_label_names", meta_path),
    }
    for split in ("train", "test"):
        path = folder / split
        batch = _read_pickle(path, CIFAR100_FILES)
        x = _images(batch, path)
        out[f"x_{split}"] = x
        out[f"fine_{split}"] = _labels(batch, "fine_labels", path, x.shape[0], len(out["fine_names"]))
        out[f"coarse_{split}"] = _labels(batch, "coarse_labels", path, x.shape[0], len(out["coarse_names"]))
    return out


def build_cifar100(options: CifarOptions, data_dir: Path | None) -> ImageDataset:
    """CIFAR-100 on its 100 fine labels, without the hierarchy."""
    raw = _read_cifar100(data_dir, "cifar100")
    return ImageDataset(
        name="cifar100",
        x_train=raw["x_train"],
        y_train=raw["fine_train"],
        x_test=raw["x_test"],
        y_test=raw["fine_test"],
        num_classes=len(raw["fine_names"]),
        class_names=raw["fine_names"],
    )


def fine_to_coarse_from_labels(fine: Tensor, coarse: Tensor, num_fine: int, source: str) -> Tensor:
    """The superclass of every subclass, read off paired labels; each subclass must have exactly one.

    Returns a (num_fine,) int64 tensor; a subclass that never occurs or occurs under two superclasses
    is a DataError naming it and ``source``.
    """
    mapping = torch.full((num_fine,), -1, dtype=torch.int64)
    mapping[fine] = coarse  # with conflicting pairs one value wins; the check below catches it
    missing = torch.nonzero(mapping < 0).flatten()
    if missing.numel():
        raise DataError(f"{source}: fine label {int(missing[0])} never occurs, so its superclass is unknown.")
    conflict = torch.nonzero(mapping[fine] != coarse).flatten()
    if conflict.numel():
        f = int(fine[conflict[0]])
        raise DataError(
            f"{source}: fine label {f} occurs with coarse labels {int(mapping[f])} and {int(coarse[conflict[0]])}, "
            f"so the labels are not a hierarchy."
        )
    return mapping


def build_cifar100_coarse(options: CifarOptions, data_dir: Path | None) -> ImageDataset:
    """CIFAR-100 trained on its 20 superclasses, with the 100 fine labels as subclasses."""
    raw = _read_cifar100(data_dir, "cifar100_coarse")
    fine_to_coarse = fine_to_coarse_from_labels(
        torch.cat([raw["fine_train"], raw["fine_test"]]),
        torch.cat([raw["coarse_train"], raw["coarse_test"]]),
        len(raw["fine_names"]),
        f"{CIFAR100_FOLDER} train and test files",
    )
    return ImageDataset(
        name="cifar100_coarse",
        x_train=raw["x_train"],
        y_train=raw["coarse_train"],
        x_test=raw["x_test"],
        y_test=raw["coarse_test"],
        num_classes=len(raw["coarse_names"]),
        fine_train=raw["fine_train"],
        fine_test=raw["fine_test"],
        fine_to_coarse=fine_to_coarse,
        class_names=raw["coarse_names"],
    )


register_dataset("cifar10", CifarOptions, build_cifar10, "CIFAR-10 from a local cifar-10-batches-py folder (10 classes)")
register_dataset("cifar100", CifarOptions, build_cifar100, "CIFAR-100 from a local cifar-100-python folder (100 fine classes)")
register_dataset(
    "cifar100_coarse",
    CifarOptions,
    build_cifar100_coarse,
    "CIFAR-100 trained on its 20 superclasses, the 100 fine classes kept as subclasses",
)
