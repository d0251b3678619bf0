"""Loading plugins: files, folders, modules, built-ins and entry points; failures, blocking, tracing."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

import icc_bench
from icc_bench import Measure, MeasureContext, Registry, compute_measure
from icc_bench import plugins as plugins_module
from icc_bench.config import HyperParams
from icc_bench.data import ImageDataset
from icc_bench.plugins import DISABLE_ENV, TRACE_ENV, PluginWarning, load_plugins, measures_table
from icc_bench.registry import PluginInfo

EXAMPLE_PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "icc_example_measure"

HYPERPARAMS = HyperParams(
    learning_rate=0.1, batch_size=4, weight_decay=0.0, optimizer="sgd",
    dropout=0.0, augmentation=False, width=1.0, depth=1.0,
)


def plugin_source(measure_name: str, value: float = 2.0, *, body: str = "") -> str:
    """A plugin file that registers one measure returning ``value * settings.scale``."""
    return textwrap.dedent(
        f'''
        from __future__ import annotations  # annotations resolved through sys.modules

        from typing import Literal

        from pydantic import BaseModel, ConfigDict

        from icc_bench import Measure, hookimpl


        class Settings(BaseModel):
            model_config = ConfigDict(frozen=True)
            scale: float = 1.0
            mode: Literal["a", "b"] = "a"


        def constant(ctx, settings):
            """A constant, for tests."""
            return {value} * settings.scale


        @hookimpl
        def icc_bench_register_measures(registry):
            registry.add(Measure(name="{measure_name}", family="test", higher_is_better=True,
                                 needs_hierarchy=False, fn=constant, settings=Settings()))
        '''
    ) + textwrap.dedent(body)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_only(extra, **kwargs):
    """Load exactly ``extra``: no built-ins, no installed entry points."""
    return load_plugins([str(e) for e in extra], builtins=False, entry_points=False, **kwargs)


def tiny_model_and_dataset() -> tuple[nn.Module, ImageDataset]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 8, 8, generator=generator)
    y = torch.arange(12) % 3
    dataset = ImageDataset("tiny", x, y, x[:3], y[:3], num_classes=3)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )
    return model, dataset


def tiny_context() -> MeasureContext:
    model, dataset = tiny_model_and_dataset()
    return MeasureContext(model, dataset, HYPERPARAMS, seed=0)


# -- the ways in --------------------------------------------------------------------------------


def test_file_plugin_registers_its_measures(tmp_path):
    path = write(tmp_path / "my_plugin.py", plugin_source("my_constant"))
    loaded = load_only([path])
    info = PluginInfo("my_plugin", "file", str(path))
    assert loaded.failures == [] and loaded.loaded == [info]
    assert loaded.measures.names() == ["my_constant"]
    measure = loaded.measures.get("my_constant")
    assert measure.plugin == info and measure.description == "A constant, for tests."
    assert compute_measure(measure.with_settings(scale=3.0), tiny_context()) == 6.0
    assert loaded.measures.frozen
    assert loaded.manager.get_plugin("my_plugin") is not None


def test_package_folder_plugin_may_use_relative_imports(tmp_path):
    folder = tmp_path / "folder_plugin"
    write(folder / "values.py", "VALUE = 7.0\n")
    write(folder / "__init__.py", plugin_source("from_folder", value="VALUE", body="from .values import VALUE\n"))
    loaded = load_only([folder])
    assert loaded.failures == []
    assert loaded.loaded[0].name == "folder_plugin"
    assert compute_measure(loaded.measures.get("from_folder"), tiny_context()) == 7.0


def test_module_plugin_by_dotted_name(tmp_path, monkeypatch):
    write(tmp_path / "modplug_pkg" / "__init__.py", "")
    write(tmp_path / "modplug_pkg" / "measures.py", plugin_source("from_module") + '\n__version__ = "2.0"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_only(["modplug_pkg.measures"])
    assert loaded.failures == []
    assert loaded.measures.get("from_module").plugin == PluginInfo(
        "modplug_pkg.measures", "module", "modplug_pkg.measures", version="2.0"
    )


def test_builtins_load_by_module_name_in_a_source_checkout(tmp_path, monkeypatch):
    write(tmp_path / "fake_builtin_xyz.py", plugin_source("builtin_measure"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins_module, "BUILTIN_PLUGINS", ("fake_builtin_xyz", "absent_builtin_xyz"))
    with pytest.warns(PluginWarning, match="'absent_builtin_xyz' skipped"):
        loaded = load_plugins(entry_points=False)
    assert loaded.loaded == [
        PluginInfo("fake_builtin_xyz", "source checkout", "fake_builtin_xyz", "icc-bench", icc_bench.__version__)
    ]
    assert loaded.measures.names() == ["builtin_measure"]
    [(name, message)] = loaded.failures
    assert name == "absent_builtin_xyz"
    assert message.startswith(
        "ModuleNotFoundError: built-in plugin 'absent_builtin_xyz' is neither installed nor importable"
    )
    assert load_plugins(builtins=False, entry_points=False).loaded == []


def test_example_package_loads_through_its_entry_point(tmp_path, monkeypatch):
    source = shutil.copytree(EXAMPLE_PACKAGE, tmp_path / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    done = subprocess.run([*pip, "--target", str(target), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    monkeypatch.syspath_prepend(str(target))  # importlib.metadata now sees its dist-info
    try:
        with pytest.warns(PluginWarning, match="'not_installed_xyz' skipped"):
            loaded = load_plugins(builtins=False, entry_points=["icc_example_measure", "not_installed_xyz"])
    finally:
        sys.modules.pop("icc_example_measure", None)
    assert loaded.failures == [(
        "not_installed_xyz",
        "LookupError: no installed package declares an 'icc_bench' entry point named 'not_installed_xyz'",
    )]
    measure = loaded.measures.get("weight_norm")
    assert measure.plugin == PluginInfo(
        "icc_example_measure", "entry point", "icc_example_measure", "icc-example-measure", "0.1.0"
    )
    assert (measure.family, measure.higher_is_better, measure.needs_hierarchy) == ("example", False, False)

    ctx = tiny_context()
    kernels = [ctx.model[0].weight, ctx.model[5].weight]  # the conv and linear weights
    expected = sum(math.log(float((w.detach().double() ** 2).sum())) for w in kernels)
    assert compute_measure(measure, ctx) == pytest.approx(expected, rel=1e-12)
    # BatchNorm's bias starts at zero: a zero tensor makes the product 0, the documented -inf.
    assert compute_measure(measure.with_settings(parameters="all"), ctx) == -math.inf
    assert "icc-example-measure 0.1.0" in render(measures_table(loaded.measures))


def test_tutorial_measure_runs_as_a_file_plugin(tmp_path):
    doc = icc_bench.__doc__.splitlines()
    start = doc.index("    # my_measure.py")
    end = doc.index("Use it without installing anything::")
    path = write(tmp_path / "my_measure.py", textwrap.dedent("\n".join(doc[start:end])))
    loaded = load_only([path])
    assert loaded.failures == []
    measure = loaded.measures.get("logit_margin")
    assert (measure.family, measure.higher_is_better, measure.needs_hierarchy) == ("margin", True, False)

    ctx = tiny_context()
    with torch.no_grad():
        logits = ctx.model(ctx.dataset.x_train).tolist()
    labels = ctx.dataset.y_train.tolist()
    margins = [row[y] - max(v for c, v in enumerate(row) if c != y) for row, y in zip(logits, labels)]
    assert compute_measure(measure, ctx) == pytest.approx(np.quantile(margins, 0.1), rel=1e-5)
    assert compute_measure(measure.with_settings(quantile=0.5), ctx) == pytest.approx(np.median(margins), rel=1e-5)


# -- failures are reported and skipped ----------------------------------------------------------


def test_failing_imports_are_reported_and_skipped_while_the_others_load(tmp_path):
    good_a = write(tmp_path / "good_a.py", plugin_source("measure_a"))
    broken = write(tmp_path / "broken.py", "raise RuntimeError('database offline\\nsecond line')\n")
    syntax = write(tmp_path / "syntax.py", "def (:\n")
    good_b = write(tmp_path / "good_b.py", plugin_source("measure_b"))
    missing = tmp_path / "nowhere.py"
    with pytest.warns(PluginWarning) as warned:
        loaded = load_only([good_a, broken, syntax, missing, "no_such_module_xyz", good_b])
    assert loaded.measures.names() == ["measure_a", "measure_b"]
    assert [info.name for info in loaded.loaded] == ["good_a", "good_b"]
    failures = dict(loaded.failures)
    assert list(failures) == ["broken", "syntax", "nowhere", "no_such_module_xyz"]
    assert failures["broken"] == "RuntimeError: database offline"
    assert failures["syntax"].startswith("SyntaxError: invalid syntax")
    assert failures["nowhere"] == f"FileNotFoundError: no such plugin file or folder: {missing}"
    assert failures["no_such_module_xyz"] == "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    assert [str(w.message) for w in warned][0] == "icc-bench plugin 'broken' skipped: RuntimeError: database offline"


def test_hook_that_raises_is_reported_and_what_it_added_is_removed(tmp_path):
    raiser = write(tmp_path / "raiser.py", plugin_source("half_done", body='''
        @hookimpl
        def icc_bench_register_datasets(registry):
            pass  # a plugin that implements several hooks is skipped as a whole
    ''').replace("settings=Settings()))", "settings=Settings()))\n    raise ValueError('bad settings')"))
    good = write(tmp_path / "good.py", plugin_source("fine"))
    with pytest.warns(PluginWarning, match="'raiser' skipped"):
        loaded = load_only([raiser, good])
    assert loaded.failures == [("raiser", "icc_bench_register_measures raised ValueError: bad settings")]
    assert loaded.measures.names() == ["fine"]
    assert [info.name for info in loaded.loaded] == ["good"]
    assert loaded.manager.get_plugin("raiser") is None


def test_second_plugin_registering_a_taken_name_is_skipped_naming_the_first(tmp_path):
    first = write(tmp_path / "first.py", plugin_source("shared_name", value=1.0))
    second = write(tmp_path / "second.py", plugin_source("shared_name", value=2.0))
    with pytest.warns(PluginWarning, match="'second' skipped"):
        loaded = load_only([first, second])
    [(name, message)] = loaded.failures
    assert name == "second"
    assert f"'shared_name' is already registered by plugin 'first' ({first})" in message
    assert compute_measure(loaded.measures.get("shared_name"), tiny_context()) == 1.0


def test_malformed_measure_in_a_hook_is_reported(tmp_path):
    path = write(tmp_path / "malformed.py", plugin_source("bad").replace('family="test"', 'family=""'))
    with pytest.warns(PluginWarning):
        loaded = load_only([path])
    assert loaded.failures == [(
        "malformed",
        "icc_bench_register_measures raised InvalidMeasureError: "
        "measure 'bad': family must be a non-empty string such as 'sharpness', got ''",
    )]


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "from icc_bench import hookimpl\n@hookimpl\ndef icc_bench_register_measure(registry):\n    pass\n",
            "defines hook 'icc_bench_register_measure', which icc-bench does not have; "
            "did you mean 'icc_bench_register_measures'?",
        ),
        (
            "def icc_bench_register_measures(registry):\n    pass\n",
            "icc_bench_register_measures must be decorated with @icc_bench.hookimpl",
        ),
        (
            "from icc_bench import hookimpl\n@hookimpl\ndef icc_bench_register_measures(reg):\n    pass\n",
            "PluginValidationError: Plugin 'hooks' for hook 'icc_bench_register_measures'; "
            "hookimpl definition: icc_bench_register_measures(reg); "
            "Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec",
        ),
        ("X = 1\n", "defines no hook (a function named icc_bench_* decorated with @icc_bench.hookimpl)"),
    ],
    ids=["misspelt", "unmarked", "wrong-argument", "no-hooks"],
)
def test_hooks_icc_bench_cannot_call_are_reported(tmp_path, source, expected):
    path = write(tmp_path / "hooks.py", source)
    with pytest.warns(PluginWarning, match="'hooks' skipped"):
        loaded = load_only([path])
    [(name, message)] = loaded.failures
    assert name == "hooks" and message.startswith(expected)
    assert loaded.manager.get_plugin("hooks") is None


def test_two_plugins_with_one_name_keep_the_first(tmp_path):
    first = write(tmp_path / "a" / "same.py", plugin_source("from_a"))
    second = write(tmp_path / "b" / "same.py", plugin_source("from_b"))
    with pytest.warns(PluginWarning):
        loaded = load_only([first, second])
    assert loaded.failures == [("same", f"a plugin named 'same' is already loaded from {first}; rename one of them")]
    assert loaded.measures.names() == ["from_a"]


# -- environment variables ----------------------------------------------------------------------


def test_disable_env_keeps_plugins_from_being_imported(tmp_path, monkeypatch):
    good = write(tmp_path / "good.py", plugin_source("fine"))
    broken = write(tmp_path / "broken.py", "raise RuntimeError('imported although blocked')\n")
    monkeypatch.setenv(DISABLE_ENV, " broken , absent_name")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a blocked plugin is not a failure
        loaded = load_only([good, broken])
    assert loaded.blocked == ["broken"]
    assert loaded.failures == []
    assert loaded.measures.names() == ["fine"]


def test_disable_env_blocks_builtins_by_name(tmp_path, monkeypatch):
    write(tmp_path / "fake_builtin_abc.py", plugin_source("builtin_measure"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins_module, "BUILTIN_PLUGINS", ("fake_builtin_abc",))
    monkeypatch.setenv(DISABLE_ENV, "fake_builtin_abc")
    loaded = load_plugins(entry_points=False)
    assert (loaded.blocked, loaded.loaded, len(loaded.measures)) == (["fake_builtin_abc"], [], 0)


def test_trace_env_writes_plugins_and_hook_calls_to_stderr(tmp_path, monkeypatch, capsys):
    path = write(tmp_path / "traced.py", plugin_source("traced_measure"))
    load_only([path])
    assert capsys.readouterr().err == ""  # silent unless asked
    monkeypatch.setenv(TRACE_ENV, "1")
    load_only([path])
    err = capsys.readouterr().err
    assert f"traced: file {path}" in err
    assert "icc_bench_register_measures [hook]" in err
    assert "registry: Registry(" in err
    assert "finish icc_bench_register_measures --> [] [hook]" in err


# -- the table ----------------------------------------------------------------------------------


def render(table) -> str:
    console = Console(file=io.StringIO(), record=True, width=250, color_system=None)
    console.print(table)
    return console.export_text()


def test_measures_table_shows_direction_needs_plugin_and_settings(tmp_path):
    from pydantic import BaseModel, ConfigDict

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True)
        k: int = 30
        eps: float = 1e-07
        agg: str = "median"

    registry = Registry()
    with registry.plugin_scope(PluginInfo("icc_intraclass", "entry point", "icc_intraclass", "icc-bench", "0.1.0")):
        registry.add(Measure(name="c1", family="intraclass clustering", higher_is_better=True,
                             needs_hierarchy=True, fn=lambda ctx, s: 0.0, settings=Settings()))
    registry.add(Measure(name="sharp", family="sharpness", higher_is_better=False,
                         needs_hierarchy=False, fn=lambda ctx, s: 0.0, settings=Settings(k=3, agg="[mean]")))
    table = measures_table(registry)
    assert [column.header for column in table.columns] == ["name", "family", "direction", "needs", "plugin", "settings"]
    lines = [line.replace("┃", "│").split("│") for line in render(table).splitlines() if line[0] in "│┃"]
    cells = [[cell.strip() for cell in line[1:-1]] for line in lines]
    assert cells == [
        ["name", "family", "direction", "needs", "plugin", "settings"],
        ["c1", "intraclass clustering", "higher = better", "hierarchy", "icc-bench 0.1.0", "k=30 eps=1e-07 agg=median"],
        ["sharp", "sharpness", "lower = better", "-", "-", "k=3 eps=1e-07 agg=[mean]"],
    ]
