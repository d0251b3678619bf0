"""Records and checkpoints vouch for each other: an edit is refused with one sentence naming the
file, a damaged model costs only itself, a record never makes icc-bench import a module."""

from __future__ import annotations

import json
import sqlite3
import sys
import warnings

import pytest
import torch
from safetensors.torch import save_file

from icc_bench.cli import main
from icc_bench.config import load_spec
from icc_bench.population import train_population
from icc_bench.zoo import Zoo, ZooError, ZooWarning, read_metadata, record_sha256, sha256_file
from installed_plugins import block_installed_plugins
from two_population import write_two


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    block_installed_plugins(monkeypatch)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "bn.running_mean": torch.randn(4, generator=g)}


def _edit(zoo: Zoo, model_id: str, **fields) -> None:
    path = zoo.record_path(model_id)
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}, indent=2))


def _flip_a_weight(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: the header stays readable
    path.write_bytes(bytes(data))


@pytest.fixture
def two(tmp_path):
    """A trained zoo of two models (nothing measured yet) and its spec file."""
    spec = write_two(tmp_path)
    train_population(load_spec(spec), tmp_path / "runs", device="cpu")
    zoo = Zoo(tmp_path / "runs" / "two")
    first, second = zoo.model_ids()
    return zoo, spec, first, second


def _stored(zoo: Zoo) -> dict[str, str]:
    db = sqlite3.connect(zoo.root / "results.sqlite")
    try:
        return dict(db.execute("SELECT model_id, status FROM results"))
    finally:
        db.close()


# -- the seal ------------------------------------------------------------------------------------
def test_the_checkpoint_carries_the_records_sha256_in_its_one_metadata_key(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    record = zoo.write_model({"model_id": "m0", "test_accuracy": 0.5}, _state(0), {3: _state(3)})
    meta = read_metadata(zoo.checkpoint_path("m0"))
    assert meta == {"model_id": "m0", "format": "state_dict", "record_sha256": record["record_sha256"]}
    on_disk = json.loads(zoo.record_path("m0").read_text())
    # Over the canonical JSON without the two fields it cannot cover: written and read back alike.
    sealed = {k: v for k, v in on_disk.items() if k not in ("record_sha256", "checkpoint_sha256")}
    import hashlib

    expected = hashlib.sha256(json.dumps(sealed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert record_sha256(on_disk) == expected == on_disk["record_sha256"]
    assert on_disk["checkpoint_sha256"] == sha256_file(zoo.checkpoint_path("m0"))
    assert zoo.read_verified_record("m0") == on_disk


def test_the_same_weights_still_make_the_same_checkpoint_bytes(tmp_path):
    """The seal leaves out the clock readings, so a rerun of the same training writes the same
    checkpoint (its sha256 keys the results store) while every other field stays sealed."""
    zoo = Zoo(tmp_path / "pop")
    curve = [{"epoch": 1, "train_loss": 0.5, "seconds": 1.25}]
    first = zoo.write_model({"model_id": "m0", "created": "2026-01-01", "train_seconds": 3.0, "curve": curve}, _state(0))
    curve[0]["seconds"] = 9.5
    again = zoo.write_model({"model_id": "m0", "created": "2026-02-02", "train_seconds": 7.0, "curve": curve}, _state(0))
    assert first["checkpoint_sha256"] == again["checkpoint_sha256"] and first["record_sha256"] == again["record_sha256"]
    _edit(zoo, "m0", curve=[{"epoch": 1, "train_loss": 0.25, "seconds": 9.5}])
    with pytest.raises(ZooError, match="the record was edited"):
        zoo.read_verified_record("m0")


def test_every_way_of_editing_a_record_is_refused_naming_it(tmp_path):
    zoo = Zoo(tmp_path / "pop")
    zoo.write_model({"model_id": "m0", "test_accuracy": 0.5}, _state(0))
    zoo.write_model({"model_id": "m1", "test_accuracy": 0.7}, _state(1))
    original = zoo.record_path("m0").read_text()

    _edit(zoo, "m0", test_accuracy=0.9)
    with pytest.raises(ZooError, match="the record was edited after it was written") as e:
        zoo.read_verified_record("m0")
    assert str(zoo.record_path("m0")) in str(e.value) and "m0.safetensors" in str(e.value)
    with pytest.raises(ZooError, match="does not match the sha256 its checkpoint"):
        list(zoo.records())  # what scoring reads
    for load in (zoo.load_model, zoo.load_state_dict, zoo.read_predictions, zoo.verify):
        with pytest.raises(ZooError, match="does not match the sha256 its checkpoint"):
            load("m0")

    # Rewritten with its own sha256 recomputed: the checkpoint still vouches for the original.
    edited = {**json.loads(original), "test_accuracy": 0.9}
    zoo.record_path("m0").write_text(json.dumps({**edited, "record_sha256": record_sha256(edited)}))
    with pytest.raises(ZooError, match="rewritten, or the checkpoint belongs to another record"):
        zoo.read_verified_record("m0")

    # The record intact, the checkpoint of another model put in its place.
    zoo.record_path("m0").write_text(original)
    zoo.read_verified_record("m0")
    zoo.checkpoint_path("m0").write_bytes(zoo.checkpoint_path("m1").read_bytes())
    with pytest.raises(ZooError, match="the checkpoint belongs to another record"):
        zoo.read_verified_record("m0")

    # A checkpoint without a seal behind a sealed record: not a way around the check.
    save_file(_state(0), zoo.checkpoint_path("m0"), metadata={"icc_bench": json.dumps({"model_id": "m0"})})
    with pytest.raises(ZooError, match="carries no seal, so the checkpoint was replaced"):
        zoo.read_verified_record("m0")

    zoo.checkpoint_path("m0").write_bytes(b"\x00" * 3)
    with pytest.raises(ZooError, match="not a readable safetensors file"):
        zoo.read_verified_record("m0")
    zoo.checkpoint_path("m0").unlink()
    with pytest.raises(ZooError, match="checkpoint missing although its record exists"):
        zoo.read_verified_record("m0")


def test_a_zoo_written_before_the_seal_is_read_with_one_warning(tmp_path):
    zoo = Zoo(tmp_path / "old")
    zoo.models_dir.mkdir(parents=True)
    for i in range(2):  # as icc-bench wrote them before: no record_sha256 anywhere
        path = zoo.checkpoint_path(f"m{i}")
        save_file(_state(i), path, metadata={"icc_bench": json.dumps({"model_id": f"m{i}", "format": "state_dict"})})
        record = {"model_id": f"m{i}", "test_accuracy": 0.5, "checkpoint": path.name, "checkpoint_sha256": sha256_file(path)}
        zoo.record_path(f"m{i}").write_text(json.dumps(record))
    with pytest.warns(ZooWarning, match="records written before icc-bench sealed them") as caught:
        assert [r["model_id"] for r in zoo.records()] == ["m0", "m1"]
    assert len(caught) == 1  # once per zoo, not once per record
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(zoo.records())  # and once per process
        assert torch.equal(zoo.load_state_dict("m1")["conv.weight"], _state(1)["conv.weight"])  # the checkpoint hash still holds


# -- through the command line --------------------------------------------------------------------
def test_an_edited_accuracy_no_longer_changes_the_leaderboard(two, capsys):
    zoo, _, first, _ = two
    assert main(["evaluate", str(zoo.root), "--measures", "c3"]) == 0
    _edit(zoo, first, test_accuracy=1.0)
    capsys.readouterr()
    assert main(["leaderboard", str(zoo.root), "--measures", "c3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(zoo.record_path(first)) in err[0] and "refused" in err[0], err


def test_an_architecture_edited_to_a_factory_imports_nothing(two, tmp_path, capsys, monkeypatch):
    zoo, _, first, _ = two
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_probe.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\ndef make(num_classes):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil_probe", raising=False)
    record = json.loads(zoo.record_path(first).read_text())
    _edit(zoo, first, architecture={**record["architecture"], "name": "factory:evil_probe:make"})
    assert main(["evaluate", str(zoo.root), "--measures", "c3", "--allow-factory", "evil_probe:make"]) == 2
    assert not marker.exists(), "a module named only by a record was imported"
    assert str(zoo.record_path(first)) in capsys.readouterr().err


def test_a_factory_is_built_only_for_an_imported_record_and_when_allowed(tmp_path, monkeypatch):
    (tmp_path / "user_nets_gate.py").write_text(
        "from torch import nn\n\ndef small(num_classes):\n    return nn.Linear(3, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    zoo = Zoo(tmp_path / "pop")
    state = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    arch = {"name": "factory:user_nets_gate:small", "base_width": 32, "base_depth": None}
    common = {"architecture": arch, "num_classes": 2, "architecture_options": {}}
    zoo.write_model({"model_id": "trained", **common}, state)  # not written by icc-bench import
    zoo.write_model({"model_id": "imported", **common, "imported": {"manifest": "m.csv"}}, state)
    with pytest.raises(ZooError, match="this record was not imported, so it is refused"):
        zoo.load_model("trained", allow_factories={"user_nets_gate:small"})
    with pytest.raises(ZooError, match="add --allow-factory user_nets_gate:small if you trust that module"):
        zoo.load_model("imported")
    model, _ = zoo.load_model("imported", allow_factories={"user_nets_gate:small"})
    assert isinstance(model, torch.nn.Linear)


def test_evaluate_skips_a_damaged_checkpoint_measures_the_others_and_fails_at_the_end(two, capsys):
    zoo, _, first, second = two  # the first is measured first: before, the run stopped there
    _flip_a_weight(zoo.checkpoint_path(first))
    assert main(["evaluate", str(zoo.root), "--measures", "c3"]) == 2
    out, err = capsys.readouterr()
    assert _stored(zoo) == {second: "ok"}
    lines = err.strip().splitlines()
    assert lines[0].startswith("refused:") and str(zoo.checkpoint_path(first)) in lines[0]
    assert lines[-1].startswith("error: 1 of 2 models refused") and len(lines) == 2, err
    assert not (zoo.root / "two.json").exists()  # no leaderboard of a zoo that does not check out
    assert "Traceback" not in out + err


def test_evaluate_skips_a_missing_checkpoint(two, capsys):
    zoo, _, first, second = two
    zoo.checkpoint_path(first).unlink()
    assert main(["evaluate", str(zoo.root), "--measures", "c3"]) == 2
    assert _stored(zoo) == {second: "ok"}
    assert "checkpoint missing although its record exists" in capsys.readouterr().err


def test_train_refuses_a_damaged_model_instead_of_counting_it(two, capsys):
    zoo, spec, first, _ = two
    _flip_a_weight(zoo.checkpoint_path(first))
    damaged = {p.name: p.read_bytes() for p in zoo.models_dir.glob(f"{first}*")}
    capsys.readouterr()
    assert main(["train", str(spec), "--runs-dir", str(zoo.root.parent)]) == 2
    out, err = capsys.readouterr()
    assert "1 already there, 1 refused" in " ".join(out.split())
    lines = err.strip().splitlines()
    assert str(zoo.checkpoint_path(first)) in lines[0] and lines[-1].startswith("error: 1 of 2 models refused")
    assert {p.name: p.read_bytes() for p in zoo.models_dir.glob(f"{first}*")} == damaged  # left as found
