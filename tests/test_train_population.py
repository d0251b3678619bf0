"""Training a population: resumable after SIGKILL, deterministic, clear about bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from icc_bench.cli import main
from icc_bench.config import load_spec
from icc_bench.population import expand, train_population
from icc_bench.zoo import Zoo, ZooError
from tiny_population import TINY, subprocess_env, write_tiny

def test_sigkill_mid_population_then_resume(tmp_path):
    spec_path = write_tiny(tmp_path, epochs=4)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "icc_bench.cli", "train", str(spec_path), "--runs-dir", str(runs)]
    zoo = Zoo(runs / "tiny")
    total = len(expand(load_spec(spec_path)))
    assert total == 7

    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(zoo.model_ids()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the population finished before it could be killed: make it slower"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in zoo.models_dir.glob("*.json")}
    assert 2 <= len(before) < total

    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{total - len(before)} trained now" in " ".join(done.stdout.split())
    assert len(zoo.model_ids()) == total
    for name, data in before.items():  # nothing recorded before the kill was retrained
        assert (zoo.models_dir / name).read_bytes() == data
    for model_id in zoo.model_ids():
        zoo.verify(model_id)
        zoo.verify(model_id, epoch=1)
    assert not [p for p in zoo.models_dir.iterdir() if p.name.endswith(".tmp")]


def test_training_is_deterministic_on_cpu_and_records_are_complete(tmp_path):
    spec = load_spec(write_tiny(tmp_path, epochs=2))
    a = train_population(spec, tmp_path / "a", limit=2, device="cpu")
    b = train_population(spec, tmp_path / "b", limit=2, device="cpu")
    assert a.trained == b.trained == 2 and a.remaining == 5
    for ra, rb in zip(a.records, b.records):
        assert ra["checkpoint_sha256"] == rb["checkpoint_sha256"]
        untimed = lambda curve: [{k: v for k, v in c.items() if k != "seconds"} for c in curve]
        assert untimed(ra["curve"]) == untimed(rb["curve"])
    record = a.records[0]
    for key in ("hyperparams", "architecture", "dataset", "seed", "curve", "train_accuracy", "test_accuracy",
                "train_loss", "test_loss", "status", "checkpoint_sha256", "versions", "layers"):
        assert key in record
    assert record["layers"] == 9 and len(record["curve"]) == 2
    model, rec = Zoo(tmp_path / "a" / "tiny").load_model(record["model_id"])
    assert not model.training and rec == record
    # The reloaded model reproduces the recorded test accuracy.
    from icc_bench.population import load_job_dataset
    from icc_bench.train import evaluate

    data = load_job_dataset(spec.dataset, None)
    assert evaluate(model, data.x_test, data.y_test)[1] == pytest.approx(record["test_accuracy"])
    # The record's predictions are the reloaded model's, and give back its test accuracy.
    from icc_bench.train import evaluate_with_predictions

    predicted, labels = Zoo(tmp_path / "a" / "tiny").read_predictions(record["model_id"])["test"]
    assert labels.tolist() == data.y_test.tolist()
    assert predicted.tolist() == evaluate_with_predictions(model, data.x_test, data.y_test)[2].tolist()
    assert (predicted == labels).mean() == pytest.approx(record["test_accuracy"])


def test_altered_checkpoint_refused_when_loading(tmp_path):
    spec = load_spec(write_tiny(tmp_path, epochs=1))
    summary = train_population(spec, tmp_path, limit=1, device="cpu")
    zoo = Zoo(tmp_path / "tiny")
    model_id = summary.records[0]["model_id"]
    path = zoo.checkpoint_path(model_id)
    tensors = bytearray(path.read_bytes())
    tensors[len(tensors) // 2] ^= 0xFF
    path.write_bytes(bytes(tensors))
    with pytest.raises(ZooError, match="does not match the sha256"):
        zoo.load_model(model_id)


def test_changed_spec_is_refused_before_training(tmp_path, capsys):
    path = write_tiny(tmp_path, epochs=1)
    assert main(["train", str(path), "--runs-dir", str(tmp_path / "runs"), "--limit", "1"]) == 0
    # A new description or measure setting does not change the trained models: accepted.
    path.write_text(TINY.format(epochs=1).replace("for tests", "for tests, renamed") + "\n[measure_settings.c3]\nk = 3\n")
    assert main(["train", str(path), "--runs-dir", str(tmp_path / "runs"), "--limit", "0"]) == 0
    path.write_text(TINY.format(epochs=2))
    assert main(["train", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "trained from a different 'tiny' spec" in " ".join(err.split())
    assert len(Zoo(tmp_path / "runs" / "tiny").model_ids()) == 1


def test_missing_cifar_folder_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ICC_BENCH_DATA", raising=False)
    code = main(["train", "vgg_cifar10", "--runs-dir", str(tmp_path), "--data-dir", str(tmp_path / "nope"), "--limit", "1"])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(tmp_path / "nope") in err
    assert not (tmp_path / "vgg_cifar10" / "models").exists()


def test_populations_lists_every_spec(capsys):
    assert main(["populations"]) == 0
    out = capsys.readouterr().out
    for name in ("quick", "mini", "wrn_cifar100_coarse", "wrn_cifar100", "vgg_cifar10"):
        assert name in out
