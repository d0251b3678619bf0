"""`icc-bench import`: a population trained elsewhere becomes a zoo that scores like the original.

The population is the tiny one of tiny_population.py, trained once; its checkpoints are exported as
plain ``torch.save(state_dict)`` files and its hyperparameters and accuracies as a CSV with the
column names a user's own scripts would choose.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from icc_bench.cli import main
from icc_bench.config import AXES, COMPOSITE_AXES, ArchitectureSpec, HyperParams, load_spec
from icc_bench.scores import composite_axes
from icc_bench.importer import ManifestError, ManifestRow, import_manifest, read_manifest
from icc_bench.leaderboard import read_leaderboard
from icc_bench.models import build_model
from icc_bench.population import train_population
from icc_bench.zoo import Zoo, ZooError
from tiny_population import write_tiny

# The user's names for the eight hyperparameters, and for the columns icc-bench reads.
USER_AXES = {"learning_rate": "lr", "weight_decay": "wd", "batch_size": "bs", "optimizer": "opt",
             "dropout": "drop", "augmentation": "aug", "width": "w", "depth": "d"}
USER_NAMES = {"model_id": "run", "checkpoint": "ckpt", "train_accuracy": "train_acc", "test_accuracy": "test_acc"}
HEADER = ["run", "ckpt", *USER_AXES.values(), "train_acc", "test_acc", "notes"]


def _csv_args(zoo_dir: Path, tiny, *extra: str) -> list[str]:
    """The `icc-bench import` command line for the exported CSV."""
    return [
        "--to", str(zoo_dir),
        "--axes", ",".join(f"{col}={axis}" for axis, col in USER_AXES.items()),
        "--rename", ",".join(f"{col}={name}" for name, col in USER_NAMES.items()),
        "--ignore", "notes",
        "--set", "architecture=vgg", "--set", f"base_width={tiny.arch['base_width']}",
        "--set", f"dataset={tiny.dataset['name']}", "--set", f"dataset_options={json.dumps(tiny.dataset['options'])}",
        *extra,
    ]


def _user_row(run: str, ckpt: str, record: dict, **changes) -> dict:
    """A CSV row as a user's script would write it: its own names, 'SGD', 'yes'/'no'."""
    hp = record["hyperparams"]
    row = {"run": run, "ckpt": ckpt, **{USER_AXES[a]: hp[a] for a in USER_AXES}, "train_acc": record["train_accuracy"],
           "test_acc": record["test_accuracy"], "notes": "from my sweep"}
    row["opt"] = hp["optimizer"].upper()
    row["aug"] = "yes" if hp["augmentation"] else "no"
    row.update(changes)
    return row


def _write_csv(path: Path, rows: list[dict], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


# Two epochs leave the tiny networks near chance, every test accuracy alike, and a score of tied
# targets is 0 or undefined whatever the measure. The records get distinct accuracies instead, as a
# real population has, so that the scores compared below are real numbers.
STAGED_ACCURACIES = [(1.0, 0.62), (0.99, 0.71), (0.98, 0.55), (0.97, 0.80), (0.96, 0.67), (0.95, 0.74), (0.94, 0.59)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny population trained and evaluated once, and its export as a user would leave it."""
    root = tmp_path_factory.mktemp("import")
    spec = load_spec(write_tiny(root, epochs=2))
    summary = train_population(spec, root / "runs", device="cpu")
    zoo = Zoo(root / "runs" / "tiny")
    trained = {r["model_id"]: dict(r) for r in summary.records}  # the accuracies measured after training
    for (train_acc, test_acc), model_id in zip(STAGED_ACCURACIES, sorted(trained)):
        staged = dict(trained[model_id], train_accuracy=train_acc, test_accuracy=test_acc)
        # Written again through the zoo, so that the checkpoint vouches for the staged record.
        zoo.write_model(staged, zoo.load_state_dict(model_id))
    assert main(["evaluate", str(zoo.root), "--measures", "c3,c4"]) == 0
    records = list(zoo.records())
    user = root / "user"
    (user / "ckpts").mkdir(parents=True)
    rows, run_of = [], {}
    # The user's run names follow another order than icc-bench's model ids.
    for i, record in enumerate(sorted(records, key=lambda r: r["model_id"], reverse=True)):
        run = f"run_{i:02d}"
        torch.save(zoo.load_state_dict(record["model_id"]), user / "ckpts" / f"{run}.pt")
        rows.append(_user_row(run, f"ckpts/{run}.pt", record))
        run_of[record["model_id"]] = run
    return SimpleNamespace(
        root=root, zoo=zoo, records={r["model_id"]: r for r in records}, trained=trained, run_of=run_of, user=user,
        csv=_write_csv(user / "results.csv", rows), rows=rows, leaderboard=read_leaderboard(zoo.root / "tiny.json"),
        arch=records[0]["architecture"], dataset=records[0]["dataset"],
    )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


# -- the round trip ------------------------------------------------------------------------------
def test_imported_population_scores_exactly_like_the_original(tiny, tmp_path):
    imported = Zoo(tmp_path / "mine")
    assert main(["import", str(tiny.csv), *_csv_args(imported.root, tiny)]) == 0

    assert sorted(imported.model_ids()) == sorted(tiny.run_of.values())
    for model_id, original in tiny.records.items():
        record = imported.read_record(tiny.run_of[model_id])
        # Every key a trained zoo's record has, but the predictions: a manifest-only import never ran the model.
        assert set(original) - {"predictions"} <= set(record) and imported.read_predictions(record["model_id"]) is None
        assert record["hyperparams"] == original["hyperparams"]
        for key in ("train_accuracy", "test_accuracy", "layers", "parameters", "num_classes", "input_shape", "hierarchical"):
            assert record[key] == original[key], key
        weights = imported.load_state_dict(record["model_id"])  # checksum verified
        for key, tensor in tiny.zoo.load_state_dict(model_id).items():
            assert torch.equal(weights[key], tensor)
    spec = json.loads((imported.root / "population.json").read_text())
    assert spec["name"] == "mine" and "schedule" not in spec and len(spec["configs"]) == len(tiny.records)

    assert main(["evaluate", str(imported.root), "--measures", "c3,c4"]) == 0
    lb = read_leaderboard(imported.root / "mine.json")
    assert lb.axes == list(AXES) == tiny.leaderboard.axes
    for row in (r for r in tiny.leaderboard.rows if not r.reference):  # reference rows are seeded by model id
        mine = lb.row(row.measure)
        assert mine.groups == row.groups and mine.n_models == row.n_models == 7
        for axis in lb.axes:
            assert _same(mine.per_axis[axis], row.per_axis[axis]), (row.measure, axis)
        assert _same(mine.total, row.total) and _same(mine.cmi, row.cmi)
        values = {p.model_id: p.value for p in lb.points[row.measure]}
        for point in tiny.leaderboard.points[row.measure]:  # the measure itself, model by model
            assert point.value is not None and values[tiny.run_of[point.model_id]] == point.value

    assert main(["leaderboard", str(imported.root), "--measures", "c3,c4"]) == 0  # re-rendered from the store
    assert read_leaderboard(imported.root / "mine.json").row("c3").total == lb.row("c3").total


def test_measure_accuracy_reproduces_the_recorded_accuracies(tiny, tmp_path):
    zoo = Zoo(tmp_path / "measured")
    args = _csv_args(zoo.root, tiny, "--measure-accuracy")
    args[args.index("notes")] = "notes,train_acc,test_acc"  # as if the user had never recorded them
    assert main(["import", str(tiny.csv), *args]) == 0
    for model_id, original in tiny.trained.items():
        record = zoo.read_record(tiny.run_of[model_id])
        for key in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
            assert record[key] == original[key], key
        assert record["imported"]["manifest_accuracies"] == {"train_accuracy": None, "test_accuracy": None}
        # Measured as training measures, so the test predictions are the original model's.
        predicted, labels = zoo.read_predictions(record["model_id"])["test"]
        original_predicted, original_labels = tiny.zoo.read_predictions(model_id)["test"]
        assert predicted.tolist() == original_predicted.tolist() and labels.tolist() == original_labels.tolist()


# -- validation: every problem, one line each, nothing written -----------------------------------
def _problems(manifest: Path, zoo_dir: Path, **settings) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        import_manifest(manifest, zoo_dir, **settings)
    assert not zoo_dir.exists(), "a rejected import must write nothing"
    assert not [p for p in zoo_dir.parent.iterdir() if p.name.startswith(f".{zoo_dir.name}.")], "no staging folder left"
    return caught.value.problems


def _settings(tiny) -> dict:
    return {
        "axes": {col: axis for axis, col in USER_AXES.items()},
        "rename": {col: name for name, col in USER_NAMES.items()},
        "ignore": ["notes"],
        "constants": {"architecture": "vgg", "base_width": str(tiny.arch["base_width"]), "dataset": tiny.dataset["name"],
                      "dataset_options": json.dumps(tiny.dataset["options"])},
    }


def _line(problems: list[str], prefix: str) -> str:
    found = [p for p in problems if p.startswith(prefix)]
    assert len(found) == 1, f"expected one problem starting with {prefix!r} in:\n" + "\n".join(problems)
    return found[0]


def test_every_bad_row_is_reported_and_nothing_is_written(tiny, tmp_path):
    good = tiny.rows[0]
    base = next(r for r in tiny.records.values() if r["hyperparams"]["width"] == 1.0)  # a width-1 checkpoint
    base_ckpt = tiny.user / "ckpts" / f"{tiny.run_of[base['model_id']]}.pt"
    weights = torch.load(base_ckpt, weights_only=True)
    torch.save({**weights, "extra.bias": torch.zeros(3)}, tmp_path / "extra.pt")
    last_key = list(weights)[-1]
    torch.save({k: v for k, v in weights.items() if k != last_key}, tmp_path / "short.pt")
    torch.save({"state_dict": weights, "epoch": 2}, tmp_path / "nested.pt")
    rows = [
        dict(good, run="ok", ckpt=str(tiny.user / good["ckpt"])),  # row 1: fine
        dict(good, run="lost", ckpt="ckpts/nowhere.pt"),  # row 2
        _user_row("wide", str(base_ckpt), base, w=1.5),  # row 3: the row claims width 1.5
        dict(good, run="extra", ckpt=str(tmp_path / "extra.pt")),  # row 4
        dict(good, run="short", ckpt=str(tmp_path / "short.pt")),  # row 5
        dict(good, run="ok", ckpt=str(tiny.user / good["ckpt"])),  # row 6: the id of row 1
        dict(good, run="bad_values", lr="-0.1", opt="rmsprop", bs="many"),  # row 7
        dict(good, run="percent", test_acc="93.5"),  # row 8
        dict(good, run="nested", ckpt=str(tmp_path / "nested.pt")),  # row 9: needs checkpoint_key
    ]
    header = [*HEADER, "comment"]
    rows = [dict(r, comment="") for r in rows[:-1]] + [dict(rows[-1], comment="x")]
    manifest = _write_csv(tmp_path / "bad.csv", rows, header)
    problems = _problems(manifest, tmp_path / "zoo", **_settings(tiny))

    assert _line(problems, "row 2 ('lost'), column 'ckpt': ").endswith(f"no such file {tmp_path / 'ckpts' / 'nowhere.pt'}")
    # The first key whose shape differs, found by a plain loop over the two networks.
    hp = HyperParams.model_validate(dict(base["hyperparams"], width=1.5))
    wide = build_model(ArchitectureSpec.model_validate(base["architecture"]), hp, 2, (3, 8, 8)).state_dict()
    key = next(k for k in wide if wide[k].shape != weights[k].shape)
    line = _line(problems, "row 3 ('wide'), column 'ckpt': ")
    assert f"key '{key}' has shape {tuple(weights[key].shape)} in the checkpoint but {tuple(wide[key].shape)} in the " in line
    assert "key 'extra.bias' of the checkpoint is not in the architecture" in _line(problems, "row 4 ('extra'), column 'ckpt': ")
    line = _line(problems, "row 5 ('short'), column 'ckpt': ")
    assert f"key '{last_key}' of the architecture is missing from the checkpoint" in line
    assert "model id 'ok' is also row 1's" in _line(problems, "row 6 ('ok'), column 'run': ")
    assert "greater than 0" in _line(problems, "row 7 ('bad_values'), column 'lr': ")
    assert "'sgd' or 'adam'" in _line(problems, "row 7 ('bad_values'), column 'opt': ")
    assert "valid integer" in _line(problems, "row 7 ('bad_values'), column 'bs': ")
    assert "not a fraction in [0, 1]" in _line(problems, "row 8 ('percent'), column 'test_acc': ")
    line = _line(problems, "row 9 ('nested'), column 'ckpt': ")
    assert line.endswith("nested.pt: not a state_dict: entry 'state_dict' is a dict, not a tensor (entries: 'state_dict', "
                         "'epoch'); name the entry that holds the state_dict in column checkpoint_key: 'state_dict'?")
    assert "unknown column" in _line(problems, "row 9, column 'comment': ")  # an empty cell is no value
    assert len(problems) == 11, "\n".join(problems)

    # The same file through the command line: exit status 2, the problems on stderr.
    args = ["import", str(manifest), *_csv_args(tmp_path / "zoo", tiny)]
    assert main(args) == 2 and not (tmp_path / "zoo").exists()

    # A problem on every row is one line.
    problems = _problems(tiny.csv, tmp_path / "zoo", **dict(_settings(tiny), ignore=[]))
    assert problems == ["every row, column 'notes': unknown column: map it onto an axis (--axes), rename it onto a "
                        "column icc-bench reads (--rename), or leave it out (--ignore)"]


def test_settings_and_target_folder_are_checked_before_any_row(tiny, tmp_path):
    occupied = tmp_path / "occupied"
    (occupied / "models").mkdir(parents=True)
    settings = _settings(tiny)
    settings["axes"] = {**settings["axes"], "lr": "learning_rate", "wd": "learning_rate", "notes": "total"}
    settings["axes"].pop("opt")
    settings["ignore"] = []
    with pytest.raises(ManifestError) as caught:
        import_manifest(tiny.csv, occupied, **settings)
    problems = caught.value.problems
    assert _line(problems, f"--to {occupied}: ").endswith("already exists and is not empty; import into a new folder")
    assert "already the axis of column 'lr'" in _line(problems, "axes 'wd=learning_rate': ")
    assert "neither one of the eight axes" in _line(problems, "axes 'notes=total': ")
    assert "--set optimizer=VALUE" in _line(problems, "hyperparameter 'optimizer': ")
    assert "--axes COLUMN=weight_decay" in _line(problems, "hyperparameter 'weight_decay': ")
    assert len(problems) == 5, "\n".join(problems)
    assert [p.name for p in occupied.iterdir()] == ["models"]


def test_a_pickle_that_runs_code_is_refused_without_running_it(tiny, tmp_path):
    marker = tmp_path / "the_payload_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"features.0.weight": torch.zeros(1), "x": Payload()}, evil)
    manifest = _write_csv(tmp_path / "m.csv", [dict(tiny.rows[0], ckpt=str(evil))])
    problems = _problems(manifest, tmp_path / "zoo", **_settings(tiny))
    line = _line(problems, f"row 1 ('{tiny.rows[0]['run']}'), column 'ckpt': evil.pt: ")
    assert "torch.load(weights_only=True) refuses" in line and "system" in line
    assert not marker.exists()


# -- JSON manifests, axes beyond the eight, factories ---------------------------------------------
def test_json_manifest_scores_on_the_declared_axes_only(tiny, tmp_path):
    """Three models that differ in learning rate or batch size only, plus a copy of the base model
    along a new axis, 'momentum': the leaderboard has exactly these three axes."""
    base_hp = {"learning_rate": 0.05, "batch_size": 16, "weight_decay": 0.0, "optimizer": "sgd", "dropout": 0.0,
               "augmentation": False, "width": 1.0, "depth": 1.0}
    wanted = {"base": base_hp, "low_lr": dict(base_hp, learning_rate=0.01), "big_batch": dict(base_hp, batch_size=48)}
    ids = {name: next(m for m, r in tiny.records.items() if r["hyperparams"] == hp) for name, hp in wanted.items()}
    torch.save({"state_dict": tiny.zoo.load_state_dict(ids["base"]), "epoch": 2}, tmp_path / "base_copy.pt")

    def row(name, model_id, mom, **more):
        r = tiny.records[model_id]
        return {"model_id": name, "ckpt": str(tiny.user / "ckpts" / f"{tiny.run_of[model_id]}.pt"),
                "lr": r["hyperparams"]["learning_rate"], "bs": r["hyperparams"]["batch_size"], "mom": mom,
                "train_accuracy": r["train_accuracy"], "test_accuracy": r["test_accuracy"], **more}

    manifest = {
        "comments": {"mom": "SGD momentum"},
        "axes": {"lr": "learning_rate", "bs": "batch_size", "mom": "momentum"},
        "constants": {"architecture": "vgg", "base_width": tiny.arch["base_width"], "dataset": tiny.dataset["name"],
                      "dataset_options": tiny.dataset["options"], "weight_decay": 0, "optimizer": "SGD",
                      "dropout": 0, "augmentation": False},
        "rename": {"ckpt": "checkpoint"},
        "models": [row(name, ids[name], 0.9) for name in wanted]
        + [row("base_mom", ids["base"], 0.5, ckpt="base_copy.pt", checkpoint_key="state_dict", test_accuracy=0.5)],
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    zoo = Zoo(tmp_path / "subset")
    assert main(["import", str(path), "--to", str(zoo.root)]) == 0
    record = zoo.read_record("base_mom")
    assert record["axes"] == ["learning_rate", "batch_size", "momentum"]
    assert record["extra_hyperparams"] == {"momentum": 0.5} and record["hyperparams"] == base_hp
    assert record["imported"]["checkpoint_key"] == "state_dict"

    assert main(["evaluate", str(zoo.root), "--measures", "c3,c4"]) == 0
    lb = read_leaderboard(zoo.root / "subset.json")
    assert lb.axes == ["learning_rate", "batch_size", "momentum"]
    for row_ in (r for r in lb.rows if not r.reference):
        points = {p.model_id: p for p in lb.points[row_.measure]}
        assert row_.groups == {"learning_rate": 1, "batch_size": 1, "momentum": 1}
        # Each group is one pair, whose Kendall tau_a is the product of the signs of the differences.
        for axis, (a, b) in {"learning_rate": ("base", "low_lr"), "batch_size": ("base", "big_batch"),
                             "momentum": ("base", "base_mom")}.items():
            sign = lambda x: (x > 0) - (x < 0)
            tau = sign(points[a].value - points[b].value) * sign(points[a].target - points[b].target)
            assert row_.per_axis[axis] == tau, axis
        assert row_.per_axis["momentum"] == 0  # the same weights twice: tied measure values
        assert _same(row_.per_axis["learning_rate"], tiny.leaderboard.row(row_.measure).per_axis["learning_rate"])


def test_cmi_conditions_on_the_declared_axes():
    """The paper's composite axes cut down to the declared axes; a new axis is a composite of its own."""
    assert composite_axes(list(AXES)) == COMPOSITE_AXES
    assert composite_axes(["learning_rate", "batch_size", "momentum"]) == (("learning_rate",), ("batch_size",), ("momentum",))
    assert composite_axes(["dropout", "width", "depth", "ls"]) == (("dropout",), ("width", "depth"), ("ls",))


FACTORIES = '''
from torch import nn


def small_cnn(num_classes, width=4):
    """conv - BatchNorm - ReLU - global max pool - linear."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def no_classes(width=4):
    return small_cnn(2, width)
'''


def test_factory_architectures_are_rebuilt_from_the_record(tiny, tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    from user_nets import small_cnn

    rows = []
    for i, (lr, channels) in enumerate([(0.1, 4), (0.1, 8), (0.01, 4)]):
        torch.manual_seed(i)
        save_file(small_cnn(2, width=channels).state_dict(), tmp_path / f"net{i}.safetensors")
        rows.append({"checkpoint": f"net{i}.safetensors", "lr": lr, "channels": channels,
                     "architecture_options": {"width": channels}})
    constants = {"architecture": "factory:user_nets:small_cnn", "dataset": tiny.dataset["name"],
                 "dataset_options": tiny.dataset["options"], "batch_size": 32, "weight_decay": 0,
                 "optimizer": "sgd", "dropout": 0, "augmentation": False}
    manifest = {"axes": {"lr": "learning_rate", "channels": "channels"}, "constants": constants, "models": rows}
    path = tmp_path / "nets.json"
    path.write_text(json.dumps(manifest))
    zoo = Zoo(tmp_path / "nets")
    assert main(["import", str(path), "--to", str(zoo.root), "--measure-accuracy"]) == 0

    x = torch.randn(5, 3, 8, 8)
    for i, (_, channels) in enumerate([(0.1, 4), (0.1, 8), (0.01, 4)]):
        with pytest.raises(ZooError, match="add --allow-factory user_nets:small_cnn if you trust that module"):
            zoo.load_model(f"net{i}")  # a zoo names a module: imported only when the user allows it again
        model, record = zoo.load_model(f"net{i}", allow_factories={"user_nets:small_cnn"})
        assert record["architecture_options"] == {"width": channels} and record["extra_hyperparams"] == {"channels": channels}
        torch.manual_seed(i)
        reference = small_cnn(2, width=channels).eval()
        assert torch.equal(model(x), reference(x))
        assert 0 <= record["test_accuracy"] <= 1 and record["test_loss"] > 0
    assert main(["evaluate", str(zoo.root), "--measures", "c3"]) == 2
    assert main(["evaluate", str(zoo.root), "--measures", "c3", "--allow-factory", "user_nets:small_cnn"]) == 0
    assert read_leaderboard(zoo.root / "nets.json").row("c3").n_models == 3

    factory = constants.pop("architecture")
    bad = [
        dict(rows[0], architecture=factory, architecture_options={"width": 8}),  # row 1: the checkpoint has 4 channels
        dict(rows[1], architecture="factory:user_nets:no_classes", architecture_options={}),  # row 2
        dict(rows[2], architecture="factory:os:system", architecture_options={}),  # row 3: not a Python function
        dict(rows[0], model_id="again", architecture="factory:user_nets:missing"),  # row 4
    ]
    path.write_text(json.dumps(dict(manifest, constants=constants, models=bad)))
    problems = _problems(path, tmp_path / "bad", measure_accuracy=True)
    line = _line(problems, "row 1 ('net0'), column 'checkpoint': ")
    assert "key '0.weight' has shape (4, 3, 3, 3) in the checkpoint but (8, 3, 3, 3) in the architecture" in line
    line = _line(problems, "row 2 ('net1'), column 'architecture': ")
    assert "no_classes(width=4) does not take a parameter num_classes" in line
    assert "module 'os' has no Python function 'system'" in _line(problems, "row 3 ('net2'), column 'architecture': ")
    assert "module 'user_nets' has no Python function 'missing'" in _line(problems, "row 4 ('again'), column 'architecture': ")
    assert len(problems) == 4, "\n".join(problems)


# -- the template --------------------------------------------------------------------------------
def test_templates_document_every_column_and_read_back(tmp_path, capsys):
    csv_path, json_path = tmp_path / "m.csv", tmp_path / "m.json"
    assert main(["import", "--template", str(csv_path)]) == 0
    assert main(["import", "--template", str(json_path)]) == 0
    assert main(["import", "--template", str(csv_path)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err

    text = csv_path.read_text()
    header = next(line for line in text.splitlines() if not line.startswith("#")).split(",")
    for column in header:
        assert f"# {column}: " in text, column
    for path in (csv_path, json_path):
        manifest = read_manifest(path)
        assert len(manifest.models) == 2
    documented = json.loads(json_path.read_text())["comments"]
    assert set(documented) >= set(read_manifest(json_path).models[0]) - {"notes"}
    assert {"axes", "constants", "rename", "ignore"} <= set(documented)
    assert set(ManifestRow.model_fields) <= set(header) | {"checkpoint_key", "base_depth", "architecture_options"}

    # Read as an import, the templates fail only on what an example cannot have: the checkpoint
    # files, and the CIFAR-10 folder when this machine has none.
    axes = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay", "opt": "optimizer", "drop": "dropout",
            "aug": "augmentation"}
    for path, settings, ckpt in ((csv_path, {"axes": axes}, "checkpoint"), (json_path, {}, "ckpt")):
        with pytest.raises(ManifestError) as caught:
            import_manifest(path, tmp_path / f"zoo_{path.suffix[1:]}", **settings)
        problems = caught.value.problems
        assert sum(f"column '{ckpt}': no such file" in p for p in problems) == 2, problems
        assert all(f"column '{ckpt}': no such file" in p or "'dataset'" in p for p in problems), problems
