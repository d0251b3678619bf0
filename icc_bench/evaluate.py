"""Zoo x measures -> results store: every value a zoo lacks, computed and stored (values only).

``evaluate_zoo`` (the driver) finds every (model, measure) value the store lacks and hands one
task per model to the executor it is given (``icc_bench.executors``: in this process, or on a Ray
cluster; none given: :func:`measure_in_process`). The model is loaded (checksum verified) only when
at least one of its values is missing, its probe representations are computed once and shared by
all its measures, and the values come back to the driver, which alone writes the store, each value
the moment it arrives. A measure that raises on one model is stored with its error and the run
goes on; a measure that needs a hierarchy on flat labels is stored as not applicable.

In this process a task carries the driver's ``Measure`` objects: the plugins are loaded once, by
whoever selected the measures. Another process gets them by (name, settings), never by object: a
measure's function comes from a plugin, and a ``--plugin`` file lives in the driver's
``sys.modules`` under a made-up module name, so pickling its function (by reference, as
cloudpickle does for anything importable) fails there. ``measure_model``, what a Ray worker runs,
loads the plugins once per worker process and looks the measures up by name.

Scoring the stored values is :mod:`icc_bench.scores`' job.
"""

from __future__ import annotations

import functools
import math
import os
import time
import traceback
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from icc_bench.claims import Heartbeat, claimed_rounds
from icc_bench.config import DatasetSpec, HyperParams
from icc_bench.data.cache import load_job_dataset
from icc_bench.device import resolve_device
from icc_bench.errors import one_line
from icc_bench.measure import InvalidSettingsError, Measure, MeasureContext, NotApplicable, compute_measure
from icc_bench.store import STORE_NAME, Leases, ResultKey, ResultStore, result_key, store_for  # noqa: F401 (re-exported)
from icc_bench.zoo import Zoo, ZooError, versions

#: A measure as another process names it: (registered name, settings as JSON).
MeasureRef = tuple[str, dict[str, Any]]


@dataclass
class EvaluationStats:
    computed: int = 0
    reused: int = 0
    errors: int = 0
    not_applicable: int = 0
    models_loaded: int = 0
    seconds: float = 0.0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (model_id, why): files that do not check out


@dataclass(frozen=True)
class MeasureTask:
    """One model and the measures whose values the store lacks for it."""

    model_id: str
    measures: tuple[Measure, ...]

    def refs(self) -> tuple[MeasureRef, ...]:
        """The measures as another process looks them up: (name, settings as JSON)."""
        return tuple(measure_ref(m) for m in self.measures)


def measure_ref(measure: Measure) -> MeasureRef:
    return (measure.name, measure.settings.model_dump(mode="json"))


@dataclass(frozen=True)
class MeasuredValue:
    """One computed value: exactly the fields of ``ResultStore.put``."""

    model_id: str
    checkpoint_sha256: str
    measure: str
    settings_hash: str  # Measure.settings_hash
    seed: int  # the evaluation seed: with the three fields above and the measure, the store key
    settings: dict[str, Any]
    status: str  # "ok", "error" or "not_applicable"
    value: float | None
    error: str | None
    seconds: float
    versions: dict[str, str]


def evaluate_zoo(
    zoo: Zoo,
    measures: Sequence[Measure],
    *,
    device: str | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    retry_errors: bool = False,
    executor=None,
    progress=None,
    allow_factories: Collection[str] = (),
) -> EvaluationStats:
    """Fill the store with every missing value of ``measures`` on every model of ``zoo``.

    ``executor`` (an ``icc_bench.executors`` executor, passed in by the caller) runs one task per
    model that lacks a value and yields the values as they come: one at a time in this process, a
    model's at once from Ray. None: :func:`measure_in_process`. Each value is stored the moment it
    arrives.

    A model whose record or checkpoint does not check out (``Zoo.read_verified_record``, and the
    whole checkpoint hashed before it is measured) is skipped and listed in ``stats.refused``;
    the others are measured. Each model is claimed in the store before it is measured
    (``icc_bench.claims``), so that two evaluations of one zoo split the models between them: one
    that has nothing left to claim waits for the values the other is computing, and computes
    those whose process died. ``allow_factories`` is passed to ``Zoo.load_model``.

    ``progress`` (optional) receives ``start(total, done)``, ``model(model_id)``,
    ``value(model_id, measure_name, status)`` and, if it has it, ``waiting(n_models)``.
    """
    plugin_specs = plugin_specs_for(measures)
    stats = EvaluationStats()
    started = time.perf_counter()
    records = []
    for model_id in zoo.model_ids():
        try:
            records.append(zoo.read_verified_record(model_id))
        except ZooError as e:
            stats.refused.append((model_id, str(e)))
    by_name = {m.name: m for m in measures}
    sha = {r["model_id"]: r["checkpoint_sha256"] for r in records}
    with store_for(zoo) as store:

        def key(model_id: str, name: str) -> ResultKey:
            return result_key(model_id, sha[model_id], by_name[name], seed)

        # Errors to compute again (--retry-errors): those stored before this run, told apart by
        # when they were stored from one another process computes again meanwhile.
        retry = {
            r.key: r.created
            for r in (store.results() if retry_errors else ()) if r.status == "error"
        }

        def remaining(task: MeasureTask) -> MeasureTask | None:
            left = []
            for m in task.measures:
                row = store.get(key(task.model_id, m.name))
                if row is None or retry.get(key(task.model_id, m.name)) == row.created:
                    left.append(m)
            if len(left) == len(task.measures):
                return task
            return MeasureTask(task.model_id, tuple(left)) if left else None

        every = [MeasureTask(r["model_id"], tuple(measures)) for r in records]
        tasks = [t for t in map(remaining, every) if t is not None]
        stats.reused = len(records) * len(measures) - sum(len(t.measures) for t in tasks)
        if progress is not None:
            progress.start(len(records) * len(measures), stats.reused)

        def done_elsewhere(task: MeasureTask, left: MeasureTask | None) -> None:
            still = {m.name for m in left.measures} if left else set()
            for name in (m.name for m in task.measures if m.name not in still):
                stats.reused += 1
                if progress is not None:
                    progress.value(task.model_id, name, "by another process")

        def waiting(held: list[MeasureTask]) -> None:
            if progress is not None and hasattr(progress, "waiting"):
                progress.waiting(len(held))

        leases = Leases(store)
        expected: dict[str, int] = {}

        def checked(claimed: Iterator[MeasureTask]) -> Iterator[MeasureTask]:
            for task in claimed:
                try:  # hashed now, so that a damaged checkpoint costs only its model
                    zoo.verify(task.model_id)
                except ZooError as e:
                    leases.release(task.model_id)
                    stats.refused.append((task.model_id, str(e)))
                    for m in task.measures:
                        if progress is not None:
                            progress.value(task.model_id, m.name, "refused")
                    continue
                expected[task.model_id] = len(task.measures)
                yield task

        measure = executor.measure if executor is not None else measure_in_process
        measured_models: set[str] = set()
        try:
            with Heartbeat(leases, leases.ttl / 4):
                for claimed in claimed_rounds(
                    tasks, leases, key=lambda task: task.model_id, remaining=remaining,
                    on_done_elsewhere=done_elsewhere, on_wait=waiting,
                ):
                    for values in measure(
                        checked(claimed), zoo_root=zoo.root, plugin_specs=plugin_specs, device=device,
                        data_dir=data_dir, seed=seed, progress=progress, allow_factories=tuple(allow_factories),
                    ):
                        for v in values:
                            store.put(**asdict(v))
                            measured_models.add(v.model_id)
                            stats.computed += v.status == "ok"
                            stats.errors += v.status == "error"
                            stats.not_applicable += v.status == "not_applicable"
                            expected[v.model_id] -= 1
                            if not expected[v.model_id]:
                                leases.release(v.model_id)
                            if progress is not None:
                                progress.value(v.model_id, v.measure, v.status)
        finally:
            leases.release_all()
    stats.models_loaded = len(measured_models)
    stats.seconds = time.perf_counter() - started
    return stats


def plugin_specs_for(measures: Sequence[Measure]) -> tuple[str, ...]:
    """The ``--plugin`` values a worker must load to find ``measures`` by name.

    Built-ins and installed entry points load anyway; a ``--plugin`` file is named by its
    absolute path (the plugin loader resolved it), so a worker with another working directory
    finds it on a shared filesystem.
    """
    specs = []
    for m in measures:
        if m.plugin is None:
            raise ValueError(
                f"measure {m.name!r} was not registered by a plugin; workers look measures up by name, "
                "so register it in an icc_bench_register_measures hook (a --plugin file is enough)"
            )
        if m.plugin.origin in ("file", "module"):
            specs.append(m.plugin.location)
    return tuple(dict.fromkeys(specs))


@functools.lru_cache(maxsize=4)
def _worker_plugins(plugin_specs: tuple[str, ...], disabled: str | None):
    """The plugins of a process that measures for a driver elsewhere (a Ray worker): loaded on its
    first task, reused by the next (a CPU worker measures model after model). ``disabled`` (the
    value of ``ICC_BENCH_DISABLE_PLUGINS``) is part of the key: another value loads other plugins."""
    from icc_bench.plugins import PluginWarning, load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # the driver has reported them already
        return load_plugins(plugin_specs)


def resolve_measures(measures: Sequence[MeasureRef], plugin_specs: Sequence[str]) -> list[Measure]:
    """The named measures with the given settings, from the plugins of this process (loaded once)."""
    from icc_bench.registry import UnknownMeasureError

    from icc_bench.plugins import DISABLE_ENV

    plugins = _worker_plugins(tuple(plugin_specs), os.environ.get(DISABLE_ENV))
    resolved = []
    for name, settings in measures:
        if name not in plugins.measures:
            failed = "; ".join(f"{p}: {msg}" for p, msg in plugins.failures) or "none"
            raise UnknownMeasureError(
                f"measure {name!r} is not registered in this worker process (plugins that failed to load here: {failed}); "
                "install the same icc-bench plugins on every node, with --plugin files on a shared filesystem"
            )
        measure = plugins.measures.get(name).with_settings(**settings)
        # Another version of the plugin on this node could read the same settings differently,
        # and its values would then be stored under another settings hash than the driver's.
        if measure.settings.model_dump(mode="json") != settings:
            raise InvalidSettingsError(
                f"measure {name!r}: the plugin in this worker process reads the settings {settings} as "
                f"{measure.settings.model_dump(mode='json')}; install the same plugin version on every node"
            )
        resolved.append(measure)
    return resolved


def measure_model(
    zoo_root: str | Path,
    model_id: str,
    measures: Sequence[MeasureRef],
    plugin_specs: Sequence[str],
    device: str | None,
    data_dir: str | Path | None,
    seed: int,
    allow_factories: Collection[str] = (),
) -> list[MeasuredValue]:
    """Compute ``measures``, named by (name, settings), on one model of the zoo at ``zoo_root``;
    write nothing.

    What another process runs (a Ray worker): it finds the measures in the plugins it loads (once
    per process), loads the model (checksum verified) and its dataset itself. Each measure's
    failure is a value with status "error", never an exception; a model that cannot be loaded raises.
    """
    resolved = resolve_measures(measures, plugin_specs)
    return list(iter_model_values(zoo_root, model_id, resolved, device, data_dir, seed, allow_factories))


def iter_model_values(
    zoo_root: str | Path,
    model_id: str,
    measures: Sequence[Measure],
    device: str | None,
    data_dir: str | Path | None,
    seed: int,
    allow_factories: Collection[str] = (),
) -> Iterator[MeasuredValue]:
    """``measures`` on one model, one value at a time as each is computed (in this process the driver
    stores each at once, so that a kill loses at most the measure in progress); write nothing."""
    dev = resolve_device(device)
    zoo = Zoo(zoo_root)
    model, record = zoo.load_model(model_id, device=dev, allow_factories=allow_factories)
    dataset = load_job_dataset(DatasetSpec.model_validate(record["dataset"]), data_dir)
    ctx = MeasureContext(
        model, dataset, HyperParams.model_validate(record["hyperparams"]), seed=seed, device=dev, record=record, zoo=zoo
    )
    for m in measures:
        yield compute_value(ctx, m, model_id=model_id, checkpoint_sha256=record["checkpoint_sha256"], seed=seed)


def measure_in_process(
    tasks: Iterable[MeasureTask],
    *,
    zoo_root: str | Path,
    device: str | None,
    data_dir: str | Path | None,
    seed: int,
    progress=None,
    allow_factories: Sequence[str] = (),
    **_: Any,
) -> Iterator[list[MeasuredValue]]:
    """The tasks one after the other in this process, with the driver's own ``Measure`` objects (no
    plugin is loaded again), each value yielded alone as soon as it is computed: the executor of
    :func:`evaluate_zoo` when none is given, and ``LocalExecutor.measure``."""
    for task in tasks:
        if progress is not None:
            progress.model(task.model_id)
        for value in iter_model_values(zoo_root, task.model_id, task.measures, device, data_dir, seed, allow_factories):
            yield [value]


def _debug() -> bool:
    return bool(os.environ.get("ICC_BENCH_DEBUG"))


def compute_value(ctx: MeasureContext, measure: Measure, *, model_id: str, checkpoint_sha256: str, seed: int = 0) -> MeasuredValue:
    """Compute one value on ``ctx``; write nothing.

    A measure that raises gives status ``error`` with its one-line message (the caller goes on);
    so does one that returns NaN or an infinity, which the measure contract excludes (stored as a
    number, it would drop out of the scores without a footnote); one that does not apply gives
    ``not_applicable``.
    """
    t0 = time.perf_counter()
    value, error, status = None, None, "ok"
    try:
        value = compute_measure(measure, ctx)
    except NotApplicable as e:
        status, error = "not_applicable", str(e)
    except Exception as e:  # a measure's failure is a result, never the end of the run
        status, error = "error", one_line(e)
        if _debug():
            traceback.print_exc()
    if status == "ok" and not math.isfinite(value):
        status, error, value = "error", f"returned {value!r}; measures must return a finite float", None
    vers = versions()
    if measure.plugin is not None and measure.plugin.version:
        vers[measure.plugin.name] = measure.plugin.version
    settings = measure.settings.model_dump(mode="json")
    return MeasuredValue(
        model_id=model_id, checkpoint_sha256=checkpoint_sha256, measure=measure.name,
        settings_hash=measure.settings_hash, seed=seed, settings=settings, status=status,
        value=value, error=error, seconds=time.perf_counter() - t0, versions=vers,
    )


def compute_and_store(store: ResultStore, ctx: MeasureContext, measure: Measure, *, model_id: str,
                      checkpoint_sha256: str, seed: int = 0) -> str:
    """Compute one value on ``ctx`` (see ``compute_value``), commit it at once, return its status."""
    value = compute_value(ctx, measure, model_id=model_id, checkpoint_sha256=checkpoint_sha256, seed=seed)
    store.put(**asdict(value))
    return value.status
