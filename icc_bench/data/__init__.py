"""Datasets and tensor batch loading.

``load_dataset(DatasetSpec(name=..., options={...}), data_dir)`` returns an :class:`ImageDataset`;
the registered names are those of :func:`list_datasets` (built in: ``cifar10``, ``cifar100``,
``cifar100_coarse``, ``digits``, ``synthetic_hierarchy``). A new dataset is one
:func:`register_dataset` call. :func:`iterate_batches` and :func:`augment_batch` serve training.
"""

from __future__ import annotations

# Importing the built-in dataset modules registers them (each ends with its register_dataset call).
from icc_bench.data import cifar, digits, synthetic  # noqa: F401
from icc_bench.data.batches import augment_batch, iterate_batches
from icc_bench.data.dataset import (
    DataError,
    DatasetEntry,
    DatasetOptions,
    ImageDataset,
    get_dataset_entry,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DataError",
    "DatasetEntry",
    "DatasetOptions",
    "ImageDataset",
    "augment_batch",
    "get_dataset_entry",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
