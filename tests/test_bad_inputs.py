"""Bad input through the command line: a table of cases, every subcommand.

Each row is a command line that must fail as a user's mistake does: exit status 2, exactly one line
on stderr that says what was wrong, no traceback, and nothing left behind (no file created, changed
or deleted in the workspace: no ``runs/<pop>/population.json``, no empty zoo, no results store).
A new option is covered by adding a row.

Placeholders in a row: ``{ws}`` the workspace folder (the current directory while the row runs),
``{runs}`` an empty runs folder in it, ``{zoo}`` a trained and evaluated zoo of two models,
``{spec:NAME}`` a spec file of :data:`SPECS`, ``{plugin:NAME}`` a plugin file of :data:`PLUGINS`,
``{manifest}`` an import manifest whose only checkpoint is a 16-byte text file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from icc_bench.cli import main
from tiny_population import TINY
from installed_plugins import block_installed_plugins
from two_population import write_two

TINY_SPEC = TINY.format(epochs=1)
SPECS = {
    "tiny": TINY_SPEC,
    "unknown_arch": TINY_SPEC.replace('name = "vgg"', 'name = "vggg"'),
    "bad_measure": TINY_SPEC + "\n[measure_settings.c99]\nk = 1\n",
    "bad_setting": TINY_SPEC + "\n[measure_settings.c3]\nk = -3\n",
    "bad_toml": TINY_SPEC + "\n[grid\n",
}
PLUGINS = {
    "syntax": "def broken(:\n",
    "raises": "raise RuntimeError('database offline')\n",
}


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    block_installed_plugins(monkeypatch)


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # split on whitespace after the placeholders are filled in; '' is an empty argument
    says: str  # the one line on stderr contains this (placeholders filled in too)
    needs_no_cuda: bool = False


CASES = [
    # -- every command -------------------------------------------------------------------------
    Case("no-command", "", "the following arguments are required: command"),
    Case("unknown-command", "frobnicate", "invalid choice: 'frobnicate'"),
    Case("populations-unknown-option", "populations --bogus", "unrecognized arguments: --bogus"),
    # -- train ---------------------------------------------------------------------------------
    Case("train-unknown-population", "train zzzzz --runs-dir {runs}", "no population named 'zzzzz'. Known: "),
    Case("train-missing-spec-file", "train {ws}/nope.toml --runs-dir {runs}", "no such population spec file"),
    Case("train-bad-toml", "train {spec:bad_toml} --runs-dir {runs}", "not valid TOML"),
    Case("train-unknown-architecture", "train {spec:unknown_arch} --runs-dir {runs}", "unknown architecture 'vggg'"),
    Case("train-unknown-measure-setting", "train {spec:bad_measure} --runs-dir {runs}", "[measure_settings.c99]"),
    Case("train-invalid-measure-setting", "train {spec:bad_setting} --runs-dir {runs}", "measure 'c3': setting 'k'"),
    Case("train-device-tpu", "train {spec:tiny} --runs-dir {runs} --device tpu", "--device tpu"),
    Case("train-device-cuda", "train {spec:tiny} --runs-dir {runs} --device cuda", "--device cuda", needs_no_cuda=True),
    Case("train-device-bad-ordinal", "train {spec:tiny} --runs-dir {runs} --device cuda:99", "--device cuda:99"),
    Case("train-limit-negative", "train {spec:tiny} --runs-dir {runs} --limit -1", "--limit"),
    Case("train-limit-not-a-number", "train {spec:tiny} --runs-dir {runs} --limit x", "argument --limit"),
    Case("train-missing-plugin", "train {spec:tiny} --runs-dir {runs} --plugin {ws}/nope.py", "nope.py"),
    Case("train-ray-option-without-ray", "train {spec:tiny} --runs-dir {runs} --gpus-per-model 0.5", "--executor ray"),
    Case("train-missing-data-folder", "train vgg_cifar10 --runs-dir {runs} --data-dir {ws}/nope --limit 1", "{ws}/nope"),
    # -- measures ------------------------------------------------------------------------------
    Case("measures-missing-plugin", "measures --plugin {ws}/nope.py", "nope.py"),
    Case("measures-plugin-syntax-error", "measures --plugin {plugin:syntax}", "SyntaxError"),
    Case("measures-plugin-raises-on-import", "measures --plugin {plugin:raises}", "database offline"),
    Case("measures-missing-plugin-module", "measures --plugin no_such_module_xyz", "no_such_module_xyz"),
    # -- evaluate ------------------------------------------------------------------------------
    Case("evaluate-unknown-population", "evaluate zzzzz --runs-dir {runs}", "no population named 'zzzzz'. Known: "),
    Case("evaluate-not-a-zoo", "evaluate {ws}/empty --runs-dir {runs}", "not a zoo"),
    Case("evaluate-unknown-architecture", "evaluate {spec:unknown_arch} --runs-dir {runs}", "unknown architecture 'vggg'"),
    Case("evaluate-unknown-measure-setting", "evaluate {spec:bad_measure} --runs-dir {runs}", "[measure_settings.c99]"),
    Case("evaluate-invalid-measure-setting", "evaluate {spec:bad_setting} --runs-dir {runs}", "measure 'c3': setting 'k'"),
    Case("evaluate-empty-measures", "evaluate {spec:tiny} --runs-dir {runs} --measures ''", "--measures"),
    Case("evaluate-comma-measures", "evaluate {spec:tiny} --runs-dir {runs} --measures ,", "--measures"),
    Case("evaluate-unknown-measure", "evaluate {spec:tiny} --runs-dir {runs} --measures c99", "no measure matches 'c99'"),
    Case("evaluate-device-tpu", "evaluate {spec:tiny} --runs-dir {runs} --device tpu", "--device tpu"),
    Case("evaluate-device-cuda", "evaluate {spec:tiny} --runs-dir {runs} --device cuda", "--device cuda", needs_no_cuda=True),
    Case("evaluate-missing-plugin", "evaluate {spec:tiny} --runs-dir {runs} --plugin {ws}/nope.py", "nope.py"),
    Case("evaluate-plugin-syntax-error", "evaluate {zoo} --plugin {plugin:syntax}", "SyntaxError"),
    Case("evaluate-seed-not-a-number", "evaluate {zoo} --seed x", "argument --seed"),
    Case("evaluate-allow-factory-not-module-function", "evaluate {zoo} --allow-factory os", "write MODULE:FUNCTION"),
    Case("evaluate-no-train-empty-zoo", "evaluate {spec:tiny} --runs-dir {runs} --no-train", "no trained models"),
    # -- leaderboard ---------------------------------------------------------------------------
    Case("leaderboard-missing-folder", "leaderboard {ws}/nope", "no such folder"),
    Case("leaderboard-not-a-zoo", "leaderboard {ws}/empty", "not a zoo"),
    Case("leaderboard-empty-measures", "leaderboard {zoo} --measures ''", "--measures"),
    Case("leaderboard-unknown-measure", "leaderboard {zoo} --measures c99", "no measure matches 'c99'"),
    Case("leaderboard-missing-plugin", "leaderboard {zoo} --plugin {ws}/nope.py", "nope.py"),
    Case("leaderboard-nothing-stored", "leaderboard {zoo} --seed 5", "holds no values"),
    # -- import --------------------------------------------------------------------------------
    Case("import-no-manifest", "import", "needs a MANIFEST"),
    Case("import-missing-manifest", "import {ws}/nope.csv --to {ws}/imported", "nope.csv"),
    Case("import-text-file-as-checkpoint", "import {manifest} --to {ws}/imported", "not a checkpoint torch.load can read"),
    Case("import-device-tpu", "import {manifest} --to {ws}/imported --device tpu", "--device tpu"),
    # -- analyze -------------------------------------------------------------------------------
    Case("analyze-missing-folder", "analyze k-sweep {ws}/nope", "no trained model here"),
    Case("analyze-device-tpu", "analyze k-sweep {zoo} --device tpu", "--device tpu"),
    Case("analyze-empty-measures", "analyze k-sweep {zoo} --measures ''", "--measures"),
    Case("analyze-missing-plugin", "analyze layers {zoo} --plugin {ws}/nope.py", "nope.py"),
    Case("analyze-depth-not-a-number", "analyze layers {zoo} --depth x", "argument --depth"),
]


# -- the workspace -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    return make_workspace(tmp_path_factory.mktemp("bad_inputs"))


def make_workspace(ws: Path) -> dict[str, str]:
    """Spec and plugin files, an empty folder, a manifest, and a trained, evaluated zoo in ``ws``;
    returns the placeholders' values."""
    places = {"ws": str(ws), "runs": str(ws / "runs")}
    (ws / "runs").mkdir()
    (ws / "empty").mkdir()
    (ws / "specs").mkdir()
    for name, text in SPECS.items():
        (ws / "specs" / f"{name}.toml").write_text(text)
        places[f"spec:{name}"] = str(ws / "specs" / f"{name}.toml")
    (ws / "plugins").mkdir()
    for name, text in PLUGINS.items():
        (ws / "plugins" / f"{name}.py").write_text(text)
        places[f"plugin:{name}"] = str(ws / "plugins" / f"{name}.py")
    (ws / "manifest").mkdir()
    (ws / "manifest" / "net.pt").write_text("hello, not torch")  # 16 bytes of text
    manifest = {
        "axes": {"lr": "learning_rate"},
        "constants": {"architecture": "vgg", "base_width": 4, "dataset": "synthetic_hierarchy",
                      "dataset_options": {"superclasses": 2, "subclasses": 2, "train_per_subclass": 6,
                                          "test_per_subclass": 4, "resolution": 8},
                      "batch_size": 16, "weight_decay": 0, "optimizer": "sgd", "dropout": 0, "augmentation": False},
        "models": [{"checkpoint": "net.pt", "lr": 0.1, "train_accuracy": 1.0, "test_accuracy": 0.5}],
    }
    (ws / "manifest" / "nets.json").write_text(json.dumps(manifest))
    places["manifest"] = str(ws / "manifest" / "nets.json")
    zoo_runs = ws / "zoo_runs"
    assert main(["evaluate", str(write_two(ws)), "--runs-dir", str(zoo_runs), "--measures", "c3", "--device", "cpu"]) == 0
    places["zoo"] = str(zoo_runs / "two")
    return places


def _fill(text: str, places: dict[str, str]) -> str:
    return re.sub(r"\{([a-z_]+(?::[a-z_]+)?)\}", lambda m: places[m.group(1)], text)


def _argv(case: Case, places: dict[str, str]) -> list[str]:
    return ["" if word == "''" else word for word in _fill(case.argv, places).split()]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime) and folder under ``root``, bytecode caches aside. A folder's own
    mtime is left out: a temporary file made and removed again leaves nothing behind."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
        for p in sorted(root.rglob("*"))
        if "__pycache__" not in p.parts
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str, str, BaseException | None]:
    """``icc-bench ARGV`` in this process: (exit status, stdout, stderr, exception that escaped main)."""
    escaped = None
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # what a user would see as a traceback
        code, escaped = 1, e
    out, err = capsys.readouterr()
    return code, out, err, escaped


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, workspace, capsys, monkeypatch):
    if case.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("CUDA is available here, so --device cuda is not a mistake")
    ws = Path(workspace["ws"])
    monkeypatch.chdir(ws)
    monkeypatch.delenv("ICC_BENCH_DATA", raising=False)
    monkeypatch.setenv("ICC_BENCH_RUNS", str(ws / "runs"))
    before = _tree(ws)
    code, out, err, escaped = run_cli(_argv(case, workspace), capsys)
    assert escaped is None, f"a traceback: {type(escaped).__name__}: {escaped}"
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}; stderr:\n{err}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr, one expected:\n{err}"
    assert "Traceback" not in err
    assert _fill(case.says, workspace) in lines[0], lines[0]
    after = _tree(ws)
    assert after == before, (
        f"left behind: {sorted(set(after) - set(before))}, removed: {sorted(set(before) - set(after))}, "
        f"changed: {sorted(k for k in set(after) & set(before) if after[k] != before[k])}"
    )
