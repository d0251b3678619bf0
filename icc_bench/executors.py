"""Where jobs run. ``LocalExecutor`` trains them one after another in this process.

An executor's ``train(jobs, ...)`` yields a ``JobResult`` per finished job, in any order; it never
writes to the zoo (the driver in ``icc_bench.population`` does), so a worker that dies loses only
the model it was training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from icc_bench.population import JobResult, TrainJob, run_job


class LocalExecutor:
    """One job at a time, in this process, on ``device`` (default: CUDA when present, else CPU)."""

    name = "local"

    def train(
        self, jobs: Iterable[TrainJob], *, data_dir: str | Path | None, device: str | None, progress=None
    ) -> Iterator[JobResult]:
        for job in jobs:
            if progress is not None:
                progress.model_started(job)
            on_epoch = (lambda stats, job=job: progress.epoch(job, stats)) if progress is not None else None
            yield run_job(job, data_dir=data_dir, device=device, on_epoch=on_epoch)
