"""What several benchmarks set up alike (run_all.py skips files starting with "_")."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icc_bench.config import PopulationSpec
from icc_bench.data import ImageDataset
from icc_bench.population import find_spec, load_job_dataset, train_population
from icc_bench.zoo import Zoo


def best_of(repeats: int, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds of ``clock`` (default wall clock;
    ``time.process_time`` for CPU time)."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def first_model(population: str, runs_dir: str | Path) -> tuple[PopulationSpec, Any, dict, ImageDataset]:
    """The spec, first model (trained into ``runs_dir`` when the zoo has none), its record and its data."""
    spec = find_spec(population)
    zoo = Zoo(Path(runs_dir) / spec.name)
    if not zoo.model_ids():
        train_population(spec, runs_dir, limit=1)
    model, record = zoo.load_model(zoo.model_ids()[0])
    return spec, model, record, load_job_dataset(spec.dataset, None)
