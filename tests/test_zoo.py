"""The on-disk zoo: whole records only, checksums verified, altered checkpoints refused."""

from __future__ import annotations

import json

import pytest
import torch

from icc_bench.files import atomic_write_bytes, sha256_file
from icc_bench.zoo import Zoo, ZooError


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "bn.running_mean": torch.randn(4, generator=g)}


def test_write_then_load_roundtrip_with_snapshots(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    record = zoo.write_model({"model_id": "m0", "test_accuracy": 0.5}, _state(0), {3: _state(3)})
    assert zoo.has("m0") and zoo.model_ids() == ["m0"]
    on_disk = zoo.read_record("m0")
    assert on_disk == json.loads(json.dumps(record))
    assert on_disk["checkpoint_sha256"] == sha256_file(zoo.checkpoint_path("m0"))
    loaded = zoo.load_state_dict("m0")
    for k, v in _state(0).items():
        assert torch.equal(loaded[k], v)
    snap = zoo.load_state_dict("m0", epoch=3)
    assert torch.equal(snap["conv.weight"], _state(3)["conv.weight"])
    with pytest.raises(ZooError, match="no checkpoint saved at epoch 7"):
        zoo.load_state_dict("m0", epoch=7)
    # No temporary files are left behind.
    assert not [p for p in zoo.models_dir.iterdir() if p.name.startswith(".")]


def test_altered_checkpoint_is_refused(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    zoo.write_model({"model_id": "m0"}, _state(0))
    path = zoo.checkpoint_path("m0")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # flip one bit of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="does not match the sha256 in its record") as e:
        zoo.load_state_dict("m0")
    assert str(path) in str(e.value)


def test_missing_checkpoint_and_broken_record(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    zoo.write_model({"model_id": "m0"}, _state(0))
    zoo.checkpoint_path("m0").unlink()
    with pytest.raises(ZooError, match="checkpoint missing"):
        zoo.load_state_dict("m0")
    zoo.record_path("m0").write_text("{not json")
    with pytest.raises(ZooError, match="not valid JSON"):
        zoo.read_record("m0")
    with pytest.raises(ZooError, match="no record for model 'nope'"):
        zoo.read_record("nope")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_bytes(path, b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_predictions_roundtrip_and_tamper(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    predicted = torch.tensor([0, 2, 1, 1], dtype=torch.int16)
    labels = torch.tensor([0, 1, 1, 1], dtype=torch.int16)
    record = zoo.write_model({"model_id": "m0"}, _state(0), predictions={"test": (predicted, labels)})
    assert record["predictions"]["splits"] == {"test": 4}
    read = zoo.read_predictions("m0")
    assert read["test"][0].tolist() == [0, 2, 1, 1] and read["test"][1].tolist() == [0, 1, 1, 1]
    # A zoo without predictions (trained before they were kept, or imported) reads as None.
    zoo.write_model({"model_id": "m1"}, _state(1))
    assert zoo.read_predictions("m1") is None
    path = zoo.predictions_path("m0")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="predictions do not match the sha256"):
        zoo.read_predictions("m0")
