"""From a population spec to a zoo: expand the grid into jobs, train what is missing, record it.

A job is one (configuration, seed). Its ``model_id`` is derived from the hyperparameters and the
seed, so a re-run of the same spec finds the models it already has by name and trains only the
missing ones. Workers (see ``icc_bench.executors``) only train and return results; the driver alone
writes records, so two workers never race on the zoo. Two drivers on one zoo (two ``train`` or
``evaluate`` commands) split the missing models between them: each claims a model with a lock file
before training it (``icc_bench.claims``). A model already there whose files do not check out
(an edited record, an altered or missing checkpoint) is reported, neither counted nor retrained.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from icc_bench.config import ArchitectureSpec, DatasetSpec, HyperParams, PopulationSpec, Schedule, SpecError, load_spec
from icc_bench.claims import Heartbeat, LockFiles, claimed_rounds
from icc_bench.data.cache import load_job_dataset
from icc_bench.device import resolve_device
from icc_bench.record import ModelRecord, count_parameters
from icc_bench.zoo import Zoo, ZooError, versions

if TYPE_CHECKING:
    from icc_bench.train import TrainResult

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- specs ---------------------------------------------------------------------------------------
def spec_dirs() -> list[Path]:
    """Where population specs are looked up by name: ``$ICC_BENCH_SPECS``, ./model_zoo, the package's."""
    dirs = [Path(p) for p in os.environ.get("ICC_BENCH_SPECS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "model_zoo", REPO_ROOT / "model_zoo"]
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def available_specs() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in spec_dirs():
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_spec(name_or_path: str) -> PopulationSpec:
    """A spec by name (``quick``) or by path (``my/pop.toml``)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        return load_spec(path)
    specs = available_specs()
    if name_or_path not in specs:
        import difflib

        close = difflib.get_close_matches(name_or_path, list(specs), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        raise SpecError(
            f"no population named '{name_or_path}'{hint} Known: {', '.join(specs) or 'none'} "
            f"(looked in {', '.join(map(str, spec_dirs()))}); or pass the path of a .toml spec"
        )
    return load_spec(specs[name_or_path])


# -- jobs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainJob:
    population: str
    model_id: str
    hyperparams: HyperParams
    seed: int
    architecture: ArchitectureSpec
    dataset: DatasetSpec
    schedule: Schedule


def make_model_id(hp: HyperParams, seed: int) -> str:
    return f"{hp.slug()}_s{seed}"


def expand(spec: PopulationSpec) -> list[TrainJob]:
    return [
        TrainJob(spec.name, make_model_id(hp, seed), hp, seed, spec.architecture, spec.dataset, spec.schedule)
        for hp in spec.configurations()
        for seed in spec.seeds
    ]


@dataclass
class JobResult:
    job: TrainJob
    record: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    snapshots: dict[int, dict[str, torch.Tensor]]
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]]  # split -> (predicted, labels), int16


def run_job(job: TrainJob, *, data_dir: str | Path | None, device: str | None, on_epoch: Callable | None = None) -> JobResult:
    """Train one job and build its record (not written: the driver writes)."""
    from icc_bench.train import train_model

    dataset = load_job_dataset(job.dataset, data_dir)
    dev = resolve_device(device)
    result = train_model(job.architecture, job.hyperparams, job.schedule, dataset, seed=job.seed, device=dev, on_epoch=on_epoch)
    return job_result(job, result, dataset, dev)


def batch_groups(jobs: list[TrainJob], max_members: int) -> list[list[TrainJob]]:
    """Jobs that can train as one program (``icc_bench.train_batched.batch_key``), in groups of at
    most ``max_members``, split evenly; in the order of their first job, each group in job order.
    A job whose architecture trains one at a time is a group of its own."""
    from icc_bench.train_batched import batch_key

    if max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    by_key: dict[Any, list[TrainJob]] = {}
    for job in jobs:
        key = batch_key(job.architecture, job.hyperparams)
        by_key.setdefault((job.dataset.model_dump_json(), key) if key is not None else job.model_id, []).append(job)
    groups = []
    for same in by_key.values():
        count = -(-len(same) // max_members)  # as few groups as the limit allows, of even sizes
        groups += [same[len(same) * g // count : len(same) * (g + 1) // count] for g in range(count)]
    return groups


def run_batch(
    jobs: list[TrainJob], *, data_dir: str | Path | None, device: str | None, on_epoch: Callable | None = None
) -> Iterator[JobResult]:
    """Train jobs of one :func:`batch_groups` group as one program; yield each one's result (record
    not written) as soon as it is done. ``on_epoch(job, stats)`` after each job's epochs."""
    from icc_bench.train_batched import Member, train_batched

    dataset = load_job_dataset(jobs[0].dataset, data_dir)
    dev = resolve_device(device)
    members = [
        Member(job.hyperparams, job.seed, job.schedule, None if on_epoch is None else functools.partial(on_epoch, job))
        for job in jobs
    ]
    for i, result in train_batched(jobs[0].architecture, members, dataset, device=dev):
        yield job_result(jobs[i], result, dataset, dev)


def train_in_process(
    jobs: Iterable[TrainJob], *, data_dir: str | Path | None, device: str | None, progress=None, batch_models: int | str = 1,
) -> Iterator[JobResult]:
    """Train ``jobs`` in this process and yield each one's result as soon as it is done: the executor
    of :func:`train_population` when none is given, and ``LocalExecutor.train``.

    ``batch_models`` 1: one job at a time, ``train_model``'s own loop; N > 1: jobs that can share a
    program (:func:`batch_groups`) in groups of at most N; "auto": groups of at most
    ``icc_bench.train_batched.AUTO_MAX_MEMBERS`` of the jobs where batching pays
    (``icc_bench.train_batched.auto_batches``: narrow networks on the CPU, all on CUDA), the
    others one at a time.
    """
    # One at a time, jobs are taken as they come: each is claimed (train_population's lock files)
    # only when the previous one is done, so another process on the same zoo finds the rest free.
    # Groups need every job first, to sort them by architecture: a batched process claims its
    # whole share at once. "auto" trains the jobs it does not batch as they come, so a population
    # where nothing batches (wide networks on the CPU) is claimed one model at a time too.
    if batch_models == "auto":
        groups = _auto_groups(jobs, resolve_device(device))
    elif batch_models > 1:
        groups = batch_groups(list(jobs), batch_models)
    else:
        groups = ([job] for job in jobs)
    for group in groups:
        if progress is not None:
            for job in group:
                progress.model_started(job)
        if len(group) == 1:
            on_epoch = (lambda stats, job=group[0]: progress.epoch(job, stats)) if progress is not None else None
            yield run_job(group[0], data_dir=data_dir, device=device, on_epoch=on_epoch)
        else:
            yield from run_batch(group, data_dir=data_dir, device=device, on_epoch=progress.epoch if progress is not None else None)


def _auto_groups(jobs: Iterable[TrainJob], dev: torch.device) -> Iterator[list[TrainJob]]:
    """``--batch-models auto``'s groups: each job that does not batch alone, as soon as it is taken;
    then the others in :func:`batch_groups` of at most ``AUTO_MAX_MEMBERS``."""
    from icc_bench.train_batched import AUTO_MAX_MEMBERS, auto_batches

    batched = []
    for job in jobs:
        if auto_batches(job.architecture, job.hyperparams, dev):
            batched.append(job)
        else:
            yield [job]
    yield from batch_groups(batched, AUTO_MAX_MEMBERS)


def job_result(job: TrainJob, result: TrainResult, dataset, dev: torch.device) -> JobResult:
    """The record of a trained job, with its weights, snapshots and predictions."""
    record = ModelRecord(
        model_id=job.model_id,
        population=job.population,
        seed=job.seed,
        hyperparams=job.hyperparams.model_dump(mode="json"),
        architecture=job.architecture.model_dump(mode="json"),
        dataset=job.dataset.model_dump(mode="json"),
        schedule=job.schedule.model_dump(mode="json"),
        num_classes=dataset.num_classes,
        input_shape=list(dataset.input_shape),
        hierarchical=dataset.hierarchical,
        layers=result.layers,
        parameters=count_parameters(result.state_dict),
        status="complete",
        train_accuracy=result.train_accuracy,
        train_loss=result.train_loss,
        test_accuracy=result.test_accuracy,
        test_loss=result.test_loss,
        **({"heldout_accuracy": result.heldout_accuracy} if result.heldout_accuracy is not None else {}),
        epochs_run=result.epochs_run,
        reached_loss_stop=result.reached_loss_stop,
        train_seconds=round(result.seconds, 3),
        device=str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        curve=[vars(s) for s in result.curve],
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=versions(),
    ).to_json()
    return JobResult(job, record, result.state_dict, result.snapshots, result.predictions)


def check_architecture(spec: PopulationSpec, dataset) -> None:
    """Build each distinct network of ``spec`` on the meta device (shapes only, no memory, no
    weights), so that an unknown architecture name or an option its builder refuses is a
    ``SpecError`` before anything is written, not a crash after the first model's data is loaded."""
    from icc_bench.models import build_model

    seen = set()
    for hp in spec.configurations():
        shape = (hp.width, hp.depth, hp.dropout)  # all a builder reads from the hyperparameters
        if shape in seen:
            continue
        seen.add(shape)
        try:
            with torch.device("meta"):
                build_model(spec.architecture, hp, dataset.num_classes, tuple(dataset.input_shape))
        except ValueError as e:  # the builders' contract: a bad name or option is a ValueError
            raise SpecError(f"population '{spec.name}': field 'architecture': {e}") from None
        except Exception:
            continue


# -- the driver -----------------------------------------------------------------------------------
#: The spec fields that decide which models exist and how they were trained.
TRAINING_FIELDS = ("dataset", "architecture", "schedule", "grid", "configs", "seeds")


@dataclass
class TrainSummary:
    population: str
    total: int
    already_done: int
    trained: int
    remaining: int
    records: list[dict[str, Any]]
    seconds: float
    refused: list[tuple[str, str]] = field(default_factory=list)  # (model_id, why): files that do not check out
    trained_elsewhere: int = 0  # by another process on the same zoo, while this one ran


def refused_models(zoo: Zoo, model_ids: list[str]) -> dict[str, str]:
    """The models among ``model_ids`` whose files do not check out (``Zoo.check_model``: an edited
    record, a missing or altered checkpoint or predictions file), each with the one-line reason.

    Such a model is not "already there": ``train_population`` neither counts it nor trains it
    again over the evidence, and reports it; its files are the user's to restore or delete.
    """
    refused = {}
    for model_id in model_ids:
        try:
            zoo.check_model(model_id)
        except ZooError as e:
            refused[model_id] = str(e)
    return refused


def train_population(
    spec: PopulationSpec,
    runs_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    device: str | None = None,
    limit: int | None = None,
    executor=None,
    progress=None,
) -> TrainSummary:
    """Train every model of ``spec`` that ``<runs_dir>/<name>`` does not hold yet.

    The models already there are checked (``refused_models``); those whose files do not check
    out are listed in the summary's ``refused`` and left alone. Each model is claimed with a lock
    file before it is trained (``icc_bench.claims``), so that several processes training one zoo
    split the models between them; one that has nothing left to claim waits for the models the
    others are training, and trains any whose process died.

    ``executor`` (an ``icc_bench.executors`` executor, passed in by the caller) trains the claimed
    jobs; None: :func:`train_in_process`, one at a time. ``progress`` receives ``start(total,
    done)``, ``model_started(job)``, ``epoch(job, stats)``, ``model_done(job, record)`` and, if it
    has it, ``waiting(n_models)`` calls (``icc_bench.cli.output.Progress``); ``None`` is silent.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit}: give None (no limit) or 0 or more")
    zoo = Zoo(Path(runs_dir) / spec.name)
    existing = zoo.read_spec()
    spec_json = json.loads(spec.model_dump_json())
    # Only what decides the trained weights must match; a new description or measure setting
    # applies to the zoo as it is.
    changed = sorted(k for k in TRAINING_FIELDS if existing is not None and existing.get(k) != spec_json.get(k))
    if changed:
        raise SpecError(
            f"{zoo.root / 'population.json'}: the zoo was trained from a different '{spec.name}' spec "
            f"(differs in: {', '.join(changed)}); use another --runs-dir or move the old zoo away"
        )
    jobs = expand(spec)
    refused = refused_models(zoo, [job.model_id for job in jobs if zoo.has(job.model_id)])
    todo = [job for job in jobs if not zoo.has(job.model_id)]
    already = len(jobs) - len(todo) - len(refused)
    if limit is not None:
        todo = todo[:limit]
    # Load (and validate) the dataset and the networks before anything is written, so bad input
    # leaves nothing behind.
    check_architecture(spec, load_job_dataset(spec.dataset, data_dir))
    zoo.write_spec(spec_json)
    train = executor.train if executor is not None else train_in_process
    if progress is not None:
        progress.start(len(jobs), already)
    started = time.perf_counter()
    trained = elsewhere = 0
    locks = LockFiles(zoo.models_dir)

    def remaining(job: TrainJob) -> TrainJob | None:
        return None if zoo.has(job.model_id) else job

    def done_elsewhere(job: TrainJob, left: TrainJob | None) -> None:
        nonlocal elsewhere
        elsewhere += 1
        if progress is not None:
            progress.model_done(job, zoo.read_record(job.model_id))

    def waiting(held: list[TrainJob]) -> None:
        if progress is not None and hasattr(progress, "waiting"):
            progress.waiting(len(held))

    def cleared(claimed: Iterator[TrainJob]) -> Iterator[TrainJob]:
        for job in claimed:
            zoo.remove_partial_files(job.model_id)  # a killed writer's; ours to remove now that we hold the claim
            yield job

    try:
        with Heartbeat(locks, locks.ttl / 4):
            for claimed in claimed_rounds(
                todo, locks, key=lambda job: job.model_id, remaining=remaining, on_done_elsewhere=done_elsewhere,
                on_wait=waiting,
            ):
                for result in train(cleared(claimed), data_dir=data_dir, device=device, progress=progress):
                    zoo.write_model(result.record, result.state_dict, result.snapshots, result.predictions)
                    locks.release(result.job.model_id)
                    trained += 1
                    if progress is not None:
                        progress.model_done(result.job, result.record)
    finally:
        locks.release_all()
    records = [zoo.read_record(job.model_id) for job in jobs if zoo.has(job.model_id) and job.model_id not in refused]
    return TrainSummary(
        spec.name, len(jobs), already, trained, len(jobs) - len(records), records, time.perf_counter() - started,
        refused=sorted(refused.items()), trained_elsewhere=elsewhere,
    )
