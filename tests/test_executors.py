"""The Ray executor on a real local cluster: the local executor's records and values, workers
that die, and GPU fractions.

One cluster of two CPUs and one logical GPU serves the whole module (Ray takes seconds to start).
The GPU is only a resource Ray counts and assigns (torch sees no CUDA here): enough to check what
each task reserves and where it runs. The tiny population's first three models are trained once
by each executor and shared by the tests.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'icc-bench[ray]'")

from icc_bench.cli import main  # noqa: E402
from icc_bench.config import load_spec  # noqa: E402
from icc_bench.evaluate import MeasureTask, evaluate_zoo  # noqa: E402
from icc_bench.executors import ExecutorError, LocalExecutor, RayExecutor  # noqa: E402
from icc_bench.plugins import load_plugins  # noqa: E402
from icc_bench.population import train_population  # noqa: E402
from icc_bench.zoo import Zoo  # noqa: E402
from tiny_population import write_tiny  # noqa: E402

N_MODELS = 3

# A measure whose first call, in whichever worker, kills that worker's process the way a segfault
# or the out-of-memory killer would: no exception, no cleanup. The marker file is created
# atomically, so exactly one call dies however many run at once. Every call is logged.
CRASH_ONCE = '''
import os
from pydantic import BaseModel
from icc_bench import Measure, hookimpl

MARKER = {marker!r}
LOG = {log!r}


class Settings(BaseModel, frozen=True):
    pass


def {name}(ctx, settings):
    """The recorded test accuracy; the first call of all kills its own process."""
    try:
        os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL))
        first = True
    except FileExistsError:
        first = False
    with open(LOG, "a") as f:
        f.write(ctx.record["model_id"] + (" died" if first else " ok") + "\\n")
    if first:
        os._exit(1)
    return float(ctx.record["test_accuracy"])


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="{name}", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn={name}, settings=Settings()))
'''


# A measure that records where it ran: its process and the resources Ray assigned to its task.
WHERE_IT_RAN = '''
import json, os
import ray
from pydantic import BaseModel
from icc_bench import Measure, hookimpl

LOG = {log!r}


class Settings(BaseModel, frozen=True):
    pass


def where_it_ran(ctx, settings):
    """0.0; logs the process id and the task's resources."""
    line = {{"model_id": ctx.record["model_id"], "pid": os.getpid(),
             "resources": ray.get_runtime_context().get_assigned_resources(),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}}
    with open(LOG, "a") as f:
        f.write(json.dumps(line) + "\\n")
    return 0.0


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="where_it_ran", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=where_it_ran, settings=Settings()))
'''


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def zoos(cluster, tmp_path_factory):
    """The same three models trained by each executor: (spec path, local zoo, Ray zoo)."""
    root = tmp_path_factory.mktemp("zoos")
    spec_path = write_tiny(root, epochs=2)
    spec = load_spec(spec_path)
    local = train_population(spec, root / "local", limit=N_MODELS, device="cpu", executor=LocalExecutor())
    remote = train_population(spec, root / "ray", limit=N_MODELS, device="cpu", executor=RayExecutor())
    assert local.trained == remote.trained == N_MODELS
    return spec_path, Zoo(root / "local" / "tiny"), Zoo(root / "ray" / "tiny")


def _untimed(record: dict) -> dict:
    record = {k: v for k, v in record.items() if k not in ("train_seconds", "created")}
    record["curve"] = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in record["curve"]]
    return record


def _store_rows(zoo: Zoo) -> dict[tuple[str, str], tuple]:
    with sqlite3.connect(zoo.root / "results.sqlite") as db:
        rows = db.execute("SELECT model_id, measure, checkpoint_sha256, settings_hash, status, value, error, created FROM results")
        return {(r[0], r[1]): r[2:] for r in rows}


def _crash_once_measure(tmp_path: Path, name: str):
    plugin = tmp_path / f"{name}.py"
    marker, log = tmp_path / f"{name}.marker", tmp_path / f"{name}.log"
    plugin.write_text(CRASH_ONCE.format(name=name, marker=str(marker), log=str(log)))
    (measure,) = load_plugins([str(plugin)], entry_points=False).measures.list(name)
    return measure, marker, log


def test_ray_trains_the_same_records_as_local(zoos):
    _, local, remote = zoos
    assert remote.model_ids() == local.model_ids() and len(local.model_ids()) == N_MODELS
    for model_id in local.model_ids():
        a, b = local.read_record(model_id), remote.read_record(model_id)
        assert _untimed(b) == _untimed(a)  # checkpoint sha256, accuracies, losses, curve
        remote.verify(model_id)
        remote.verify(model_id, epoch=1)  # the snapshot came back too


def test_ray_measures_the_same_values_as_local(zoos):
    _, local, remote = zoos
    measures = load_plugins(entry_points=False).measures.list("c1,c2,c3,c4")
    a = evaluate_zoo(local, measures, device="cpu", executor=LocalExecutor())
    b = evaluate_zoo(remote, measures, device="cpu", executor=RayExecutor())
    assert a.computed == b.computed == 4 * N_MODELS and a.models_loaded == b.models_loaded == N_MODELS
    untimed = lambda rows: {k: v[:-1] for k, v in rows.items()}  # all but the created timestamp
    assert untimed(_store_rows(remote)) == untimed(_store_rows(local))
    assert {v[2] for v in _store_rows(remote).values()} == {"ok"}


def test_the_local_executor_hands_over_each_value_as_soon_as_it_is_computed(zoos):
    _, local, _ = zoos
    measures = load_plugins(entry_points=False).measures.list("c3,c4")
    task = MeasureTask(local.model_ids()[0], tuple(measures))
    batches = LocalExecutor().measure([task], zoo_root=local.root, plugin_specs=(), device="cpu", data_dir=None, seed=0)
    # One value per batch: the driver stores c3 before c4 is computed.
    assert [[v.measure for v in batch] for batch in batches] == [["c3"], ["c4"]]


def test_a_dying_worker_is_retried_and_nothing_is_lost(zoos, tmp_path):
    _, _, remote = zoos
    measure, marker, log = _crash_once_measure(tmp_path, "crash_once")
    stats = evaluate_zoo(remote, [measure], device="cpu", executor=RayExecutor(max_retries=1))
    assert marker.exists()
    calls = log.read_text().splitlines()
    (died,) = [c.split()[0] for c in calls if c.endswith(" died")]
    # The dead task ran again, on a fresh worker; no other model was measured twice.
    assert sorted(c.split()[0] for c in calls if c.endswith(" ok")) == sorted(remote.model_ids())
    assert died in remote.model_ids() and stats.computed == N_MODELS
    rows = _store_rows(remote)
    for model_id in remote.model_ids():
        status, value = rows[(model_id, "crash_once")][2:4]
        assert status == "ok" and value == remote.read_record(model_id)["test_accuracy"]


def test_a_worker_dead_past_its_retries_is_one_error_and_the_rest_is_kept(zoos, tmp_path):
    _, _, remote = zoos
    measure, marker, log = _crash_once_measure(tmp_path, "crash_no_retry")
    with pytest.raises(ExecutorError, match=r"measuring \S+: its Ray worker was lost") as raised:
        evaluate_zoo(remote, [measure], device="cpu", executor=RayExecutor(max_retries=0))
    (died,) = [c.split()[0] for c in log.read_text().splitlines() if c.endswith(" died")]
    assert died in str(raised.value)
    before = {k: v for k, v in _store_rows(remote).items() if k[1] == "crash_no_retry"}
    assert sorted(m for m, _ in before) == sorted(set(remote.model_ids()) - {died})  # the others were written

    n_calls = len(log.read_text().splitlines())
    stats = evaluate_zoo(remote, [measure], device="cpu", executor=RayExecutor(max_retries=0))
    assert stats.computed == 1 and stats.reused == N_MODELS - 1
    assert log.read_text().splitlines()[n_calls:] == [f"{died} ok"]  # only the missing value
    after = _store_rows(remote)
    assert all(after[key] == row for key, row in before.items())  # untouched, timestamps included


def test_a_damaged_checkpoint_is_refused_by_the_driver_and_the_others_are_measured_on_ray(zoos, tmp_path):
    _, _, remote = zoos
    zoo = Zoo(tmp_path / "tiny")  # the models only, without the results store
    shutil.copytree(remote.models_dir, zoo.models_dir)
    broken = zoo.model_ids()[0]
    checkpoint = zoo.checkpoint_path(broken)
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    measures = load_plugins(entry_points=False).measures.list("c3")
    stats = evaluate_zoo(zoo, measures, device="cpu", executor=RayExecutor())
    [(model_id, why)] = stats.refused  # checked before a task is sent: it costs only its own model
    assert model_id == broken and "does not match the sha256" in why
    assert sorted(m for m, _ in _store_rows(zoo)) == sorted(set(zoo.model_ids()) - {broken})  # the others


def test_gpu_fractions_are_reserved_and_each_gpu_task_gets_a_fresh_process(zoos, tmp_path):
    _, _, remote = zoos
    plugin, log = tmp_path / "where.py", tmp_path / "where.log"
    plugin.write_text(WHERE_IT_RAN.format(log=str(log)))
    measures = load_plugins([str(plugin)], entry_points=False).measures.list("where_it_ran")
    # "auto" finds no CUDA in the workers and measures on the CPU; the reservation is what counts.
    evaluate_zoo(remote, measures, device="auto", executor=RayExecutor(gpus_per_model=0.5))
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["model_id"] for r in runs) == sorted(remote.model_ids())
    for r in runs:
        assert r["resources"] == {"CPU": 1.0, "GPU": 0.5}
        assert r["cuda_visible_devices"] == "0"  # Ray's assignment, which torch would see as cuda:0
    assert len({r["pid"] for r in runs}) == N_MODELS  # CUDA binds a process to one GPU: never reused


def test_cli_trains_and_evaluates_on_ray(zoos, tmp_path, capsys):
    spec_path, _, _ = zoos
    runs = tmp_path / "runs"
    assert main(["train", str(spec_path), "--runs-dir", str(runs), "--limit", "1", "--executor", "ray", "--device", "cpu"]) == 0
    assert "1 trained now" in " ".join(capsys.readouterr().out.split())
    zoo = runs / "tiny"
    argv = ["evaluate", str(zoo), "--measures", "c3", "--executor", "ray", "--device", "cpu", "--cpus-per-model", "1"]
    assert main(argv) == 0
    assert "1 values computed, 0 reused" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpus-per-model", "0.5"], "--gpus-per-model applies to --executor ray only"),
        (["--executor", "ray", "--gpus-per-model", "2"], "give a fraction in [0, 1]"),
        (["--executor", "ray", "--device", "cuda:1"], "use --device auto, cuda or cpu"),
        (["--executor", "ray", "--device", "cuda", "--gpus-per-model", "0"], "Ray hides the GPUs"),
        (["--executor", "ray", "--device", "cpu", "--gpus-per-model", "0.5"], "--device cpu with --gpus-per-model 0.5"),
        # No node has three cores: the tasks would wait forever; they are refused instead.
        (["--executor", "ray", "--device", "cpu", "--cpus-per-model", "3"], "no node of the Ray cluster has 3 CPU(s)"),
    ],
)
def test_impossible_executor_options_are_one_clear_error(zoos, tmp_path, capsys, argv, message):
    spec_path, _, _ = zoos
    runs = tmp_path / "runs"
    assert main(["train", str(spec_path), "--runs-dir", str(runs), "--limit", "1", *argv]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not list((runs / "tiny" / "models").glob("*.json"))
