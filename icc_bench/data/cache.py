"""Datasets loaded once per process: training, measuring, importing and analysing load the same
data for model after model (a worker trains or measures many models on one dataset)."""

from __future__ import annotations

import functools
from pathlib import Path

from icc_bench.config import DatasetSpec
from icc_bench.data import ImageDataset, load_dataset  # the package: its import registers the built-in datasets


@functools.lru_cache(maxsize=4)
def _load_dataset_cached(dataset_json: str, data_dir: str | None) -> ImageDataset:
    return load_dataset(DatasetSpec.model_validate_json(dataset_json), Path(data_dir) if data_dir else None)


def load_job_dataset(spec: DatasetSpec, data_dir: str | Path | None) -> ImageDataset:
    """The dataset of ``spec`` (from ``data_dir``), loaded on first use and then reused by this
    process; the four most recent are kept."""
    return _load_dataset_cached(spec.model_dump_json(), str(data_dir) if data_dir else None)
