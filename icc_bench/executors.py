"""Where the work runs: ``LocalExecutor`` in this process, ``RayExecutor`` on a Ray cluster.

Both executors have the same two methods, and both yield results in the order they finish:

- ``train(jobs, ...)`` runs ``icc_bench.population.run_job`` per job and yields its ``JobResult``
  (the local executor, :func:`icc_bench.population.train_in_process`, with ``batch_models`` above
  1 or "auto", trains jobs that can share a program in groups, ``icc_bench.population.run_batch``,
  and yields each job's result as soon as that job is done);
- ``measure(tasks, ...)`` yields each model's values, as lists of ``MeasuredValue``: on Ray a
  model's values at once, when its task (``icc_bench.evaluate.measure_model``) ends; locally
  (:func:`icc_bench.evaluate.measure_in_process`) one value at a time, as each measure finishes.

Neither writes anything. The drivers (``population.train_population``, ``evaluate.evaluate_zoo``)
are handed an executor by their caller (the CLI, ``icc_bench.api``) and never import this module;
they write each result the moment it arrives, so a worker that dies loses only the model it was
working on, and a re-run redoes only what is missing. The command-line options that choose an
executor are ``icc_bench.cli.options``'.

On Ray, each model is one task (batched training is the local executor's: a group is one
process's program) that reserves ``cpus_per_model`` cores (its torch threads) and
``gpus_per_model`` GPUs. A fraction lets several small models share a GPU: Ray sets each task's
``CUDA_VISIBLE_DEVICES`` and counts the fractions, it does not partition the GPU's memory. Each GPU
task runs in a fresh worker process (a process that has initialised CUDA stays on its GPU), which
costs its start-up per model; CPU workers are reused.

A task whose worker process dies (a crash, the out-of-memory killer, a lost node) is run again,
up to ``max_retries`` times; an exception raised by the work itself is not (it would be raised
again). Such a failure does not stop the others: every task runs to its end, each result is
recorded, and the first failure is raised last.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from icc_bench.evaluate import MeasuredValue, MeasureTask, measure_in_process, measure_model
from icc_bench.population import JobResult, TrainJob, run_job, train_in_process


class ExecutorError(RuntimeError):
    """An executor cannot start, or a task's worker was lost; the message says which and what to do."""


class LocalExecutor:
    """Models in this process, on ``device`` (default: CUDA when present, else CPU).

    Parameters
    ----------
    batch_models : int or "auto"
        1 (the default here): one model at a time, ``train_model``'s own loop. N > 1: models that
        share an architecture and batch size train together, in groups of at most N
        (``icc_bench.train_batched``). "auto" (the command line's default): groups of at most
        ``icc_bench.train_batched.AUTO_MAX_MEMBERS``, on the CPU and on CUDA alike.
    """

    name = "local"

    def __init__(self, batch_models: int | str = 1) -> None:
        if batch_models != "auto" and not (isinstance(batch_models, int) and batch_models >= 1):
            raise ExecutorError(f"--batch-models {batch_models}: give auto, or the most models to train together (1: one at a time)")
        self.batch_models = batch_models

    def train(
        self, jobs: Iterable[TrainJob], *, data_dir: str | Path | None, device: str | None, progress=None
    ) -> Iterator[JobResult]:
        yield from train_in_process(jobs, data_dir=data_dir, device=device, progress=progress, batch_models=self.batch_models)

    def measure(
        self,
        tasks: Iterable[MeasureTask],
        *,
        zoo_root: str | Path,
        plugin_specs: Sequence[str],
        device: str | None,
        data_dir: str | Path | None,
        seed: int,
        progress=None,
        allow_factories: Sequence[str] = (),
    ) -> Iterator[list[MeasuredValue]]:
        # The driver's Measure objects, as they are: plugins are loaded once per process, by the driver.
        yield from measure_in_process(
            tasks, zoo_root=zoo_root, device=device, data_dir=data_dir, seed=seed, progress=progress,
            allow_factories=allow_factories,
        )


class RayExecutor:
    """One Ray task per model, on the cluster at ``address``.

    Parameters
    ----------
    address : str or None
        A running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None connects to
        ``$RAY_ADDRESS`` when set, else starts a cluster on this machine. Ignored when Ray is
        already initialized in this process.
    gpus_per_model : float in [0, 1] or None
        GPUs each task reserves; 0.25 runs four models per GPU. None: 1 when the cluster has a
        GPU and the device is not "cpu", else 0.
    cpus_per_model : int
        Cores each task reserves, and the torch threads it uses.
    max_retries : int
        How many times a task whose worker process died is run again.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        gpus_per_model: float | None = None,
        cpus_per_model: int = 1,
        max_retries: int = 2,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ExecutorError("--executor ray needs Ray, which is not installed here: pip install 'icc-bench[ray]'") from None
        if gpus_per_model is not None and not 0 <= gpus_per_model <= 1:
            raise ExecutorError(
                f"--gpus-per-model {gpus_per_model}: a model runs on one GPU, so give a fraction in [0, 1] "
                "(0.25 puts four models on each GPU)"
            )
        if cpus_per_model < 1:
            raise ExecutorError(f"--cpus-per-model {cpus_per_model}: each model needs at least one core")
        if max_retries < 0:
            raise ExecutorError(f"max_retries={max_retries}: give 0 (never retry) or more")
        self.address = address
        self.gpus_per_model = gpus_per_model
        self.cpus_per_model = cpus_per_model
        self.max_retries = max_retries

    def train(
        self, jobs: Iterable[TrainJob], *, data_dir: str | Path | None, device: str | None, progress=None
    ) -> Iterator[JobResult]:
        # Epoch progress stays in the workers; the driver's progress advances per finished model.
        data_dir = _absolute_data_dir(data_dir)
        calls = [(job.model_id, run_job, (job,), {"data_dir": data_dir, "device": device}) for job in jobs]
        for _, result in self._run("training", calls, device):
            yield result

    def measure(
        self,
        tasks: Iterable[MeasureTask],
        *,
        zoo_root: str | Path,
        plugin_specs: Sequence[str],
        device: str | None,
        data_dir: str | Path | None,
        seed: int,
        progress=None,
        allow_factories: Sequence[str] = (),
    ) -> Iterator[list[MeasuredValue]]:
        zoo_root = str(Path(zoo_root).resolve())
        data_dir = _absolute_data_dir(data_dir)
        calls = [
            (task.model_id, measure_model,
             (zoo_root, task.model_id, task.refs(), tuple(plugin_specs), device, data_dir, seed, tuple(allow_factories)), {})
            for task in tasks
        ]
        for _, values in self._run("measuring", calls, device):
            yield values

    # -- the engine under train and measure ----------------------------------------------------
    def _run(
        self, what: str, calls: list[tuple[str, Callable, tuple, dict]], device: str | None
    ) -> Iterator[tuple[str, Any]]:
        """Submit ``fn(*args, **kwargs)`` per ``(key, fn, args, kwargs)``; yield ``(key, result)`` as each finishes."""
        import ray
        from ray.exceptions import RayError

        if not calls:
            return
        self._connect()
        remote = ray.remote(**self._task_options(device))(_call_in_worker)
        pending = {remote.remote(self.cpus_per_model, fn, args, kwargs): key for key, fn, args, kwargs in calls}
        failures: list[tuple[str, RayError]] = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayError as e:
                        failures.append((key, e))
                        continue
                    yield key, result
        finally:
            for ref in pending:  # only when the caller stopped early (Ctrl-C, an error while writing)
                ray.cancel(ref)
        if failures:
            error, chained = _failure(what, failures, self.max_retries)
            raise error from chained

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address)
        except ConnectionError as e:
            if self.address:
                where = f"--ray-address {self.address}"
            elif os.environ.get("RAY_ADDRESS"):
                where = f"$RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
            else:
                where = "starting Ray on this machine"
            raise ExecutorError(
                f"{where}: no Ray cluster answers there ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                "start one with `ray start --head`, or leave --ray-address out to start one on this machine"
            ) from None

    def _task_options(self, device: str | None) -> dict[str, Any]:
        """Ray's resource options for one task, checked against the device and the cluster's nodes."""
        import ray

        device = "auto" if device is None else str(device)
        if device not in ("auto", "cpu", "cuda"):
            raise ExecutorError(
                f"--device {device}: on Ray each task runs on the GPU Ray assigns it; use --device auto, cuda or cpu"
            )
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        gpus = self.gpus_per_model
        if gpus is None:
            gpus = 1.0 if device != "cpu" and any(r.get("GPU", 0) > 0 for r in nodes) else 0.0
        if device == "cuda" and gpus == 0:
            raise ExecutorError(
                "--device cuda with --gpus-per-model 0: Ray hides the GPUs from tasks that reserve none; "
                "give --gpus-per-model (1, or 0.25 to put four models on each GPU)"
            )
        if device == "cpu" and gpus > 0:
            raise ExecutorError(f"--device cpu with --gpus-per-model {gpus:g}: drop one of the two")
        # A request that no node can hold would wait forever; refuse it now instead.
        if not any(r.get("CPU", 0) >= self.cpus_per_model and r.get("GPU", 0) >= gpus for r in nodes):
            largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
            raise ExecutorError(
                f"no node of the Ray cluster has {self.cpus_per_model} CPU(s) and {gpus:g} GPU(s) for one model "
                f"(the largest has {largest.get('CPU', 0):g} CPU(s), {largest.get('GPU', 0):g} GPU(s)); "
                "lower --cpus-per-model or --gpus-per-model"
            )
        # A process that has initialised CUDA cannot move to another GPU, so a GPU task gets a fresh
        # worker process (what Ray does by default, but only when it sees num_gpus at decoration);
        # CPU workers are reused, and keep their loaded dataset from one model to the next.
        max_calls = 1 if gpus > 0 else 0  # 0: unlimited
        return {"num_cpus": self.cpus_per_model, "num_gpus": gpus, "max_retries": self.max_retries, "max_calls": max_calls}


def _call_in_worker(threads: int, fn: Callable, args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` in a Ray worker, on as many torch threads as the task reserved cores."""
    import torch

    torch.set_num_threads(threads)
    return fn(*args, **kwargs)


def _failure(what: str, failures: list[tuple[str, Exception]], max_retries: int) -> tuple[BaseException, BaseException]:
    """The exception to raise for the failed tasks, and the Ray error to chain it to.

    An error raised by the work itself (a missing data folder on a node, a corrupt checkpoint) is
    raised as itself, so that it reads as it would locally; the Ray error chained to it carries
    the worker's traceback.
    """
    from ray.exceptions import RayTaskError

    key, error = failures[0]
    others = f"; {len(failures) - 1} other task(s) failed too" if len(failures) > 1 else ""
    after = "every other result is recorded: run the same command again to redo only what is missing"
    cause = error.cause if isinstance(error, RayTaskError) else None
    if isinstance(cause, Exception):
        cause.add_note(f"raised on the Ray cluster while {what} {key}{others}; {after}")
        return cause, error
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return (
        ExecutorError(
            f"{what} {key}: its Ray worker was lost and the task was retried {max_retries} time(s) ({reason}){others}; {after}"
        ),
        error,
    )


def _absolute_data_dir(data_dir: str | Path | None) -> str | None:
    """The data folder as an absolute path, from ``$ICC_BENCH_DATA`` of this process when not given:
    a worker has another working directory, and on another node maybe another environment."""
    from icc_bench.data.cifar import DATA_DIR_ENV

    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return str(Path(chosen).expanduser().resolve()) if chosen else None
