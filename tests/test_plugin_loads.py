"""Plugins load once per process: the local executor measures with the driver's own measures.

Before, every model's task loaded the plugins again and executed each ``--plugin`` file again; on a
zoo of many models that cost a plugin import per model and made a plugin's module-level state
(caches, counters) start over for each one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icc_bench import plugins
from icc_bench.cli import main
from icc_bench.config import load_spec
from icc_bench.population import train_population
from installed_plugins import block_installed_plugins
from tiny_population import write_tiny

COUNTING_PLUGIN = '''
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from icc_bench import Measure, hookimpl

with open({log!r}, "a") as log:  # one line each time this file is executed
    log.write("executed\\n")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)


def test_accuracy(ctx, settings):
    """The model's recorded test accuracy."""
    return float(ctx.record["test_accuracy"])


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="recorded_accuracy", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=test_accuracy, settings=Settings()))
'''


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    block_installed_plugins(monkeypatch)


def test_evaluate_loads_the_plugins_once_whatever_the_number_of_models(tmp_path, monkeypatch):
    train_population(load_spec(write_tiny(tmp_path, epochs=1)), tmp_path / "runs")
    zoo = tmp_path / "runs" / "tiny"
    n_models = len(list((zoo / "models").glob("*.json")))
    log = tmp_path / "executions.log"
    plugin = tmp_path / "counting.py"
    plugin.write_text(COUNTING_PLUGIN.format(log=str(log)))
    loads = []
    original = plugins.load_plugins
    monkeypatch.setattr(plugins, "load_plugins", lambda *a, **k: loads.append(a) or original(*a, **k))

    argv = ["evaluate", str(zoo), "--no-train", "--device", "cpu", "--plugin", str(plugin),
            "--measures", "recorded_accuracy", "--bootstrap", "0", "--out", str(tmp_path / "lb")]
    assert main(argv) == 0
    assert n_models > 1
    assert len(loads) == 1  # the command's own load; none per model
    assert log.read_text().splitlines() == ["executed"]  # the --plugin file ran once, not once per model
    with_values = (tmp_path / "lb" / "tiny.csv").read_text()
    assert '"recorded_accuracy"' in with_values  # and every model was measured with it
    assert Path(tmp_path / "lb" / "tiny.json").is_file()
