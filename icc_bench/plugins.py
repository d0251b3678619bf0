"""The plugin manager: built-ins, installed packages and ``--plugin`` files, loaded one way.

Built-in measures are plugins like any other (:data:`BUILTIN_PLUGINS`, declared as ``icc_bench``
entry points in icc-bench's own ``pyproject.toml``), so if they load, the third-party path works.
Where to look, in this order:

1. the built-ins, through their entry point, or by module name in a source checkout that is not
   installed yet (its entry points do not exist until ``pip install -e .``);
2. every other entry point of the ``icc_bench`` group, by name;
3. each ``--plugin``: a ``.py`` file, a package folder (a path containing ``/``) or a dotted
   module name.

A plugin that fails to import, or whose hook raises, is skipped and reported by name with a
one-line error (``PluginSet.failures`` and a :class:`PluginWarning`); the others load regardless.
A ``--plugin`` is different: the user asked for it by name, so a command that goes on without it
would not be the command they ran. :func:`check_requested` turns its failure into a
:class:`PluginError`, which the CLI prints as one line before stopping; an installed plugin that
fails keeps the warning (it may have nothing to do with the command at hand).

Environment variables (for debugging, as datasette and tox do):

``ICC_BENCH_DISABLE_PLUGINS=name1,name2``
    do not import these plugins at all (names as in ``PluginInfo.name``);
``ICC_BENCH_TRACE_PLUGINS=1``
    write each plugin found and each hook call, with its arguments and result, to stderr.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from icc_bench import hookspecs
from icc_bench.errors import one_line
from icc_bench.registry import ArchitectureRegistry, DatasetRegistry, PluginInfo, Registry

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.table import Table

    from icc_bench.measure import Measure

BUILTIN_PLUGINS: tuple[str, ...] = (
    "icc_intraclass",
    "icc_sharpness",
    "icc_margins",
    "icc_norms",
    "icc_spectral",
    "icc_disagreement",
    "icc_pgdl",
)
ENTRY_POINT_GROUP = "icc_bench"
DISABLE_ENV = "ICC_BENCH_DISABLE_PLUGINS"
TRACE_ENV = "ICC_BENCH_TRACE_PLUGINS"

# Registration hooks in lifecycle order, each with the registry object its implementations receive
# (None: the measure registry of the PluginSet being built).
_REGISTRATION_HOOKS: tuple[tuple[str, Callable[[], Any] | None], ...] = (
    ("icc_bench_register_datasets", DatasetRegistry),
    ("icc_bench_register_architectures", ArchitectureRegistry),
    ("icc_bench_register_measures", None),
)

_Loader = Callable[[], tuple[object, PluginInfo]]


class PluginWarning(UserWarning):
    """A plugin was skipped; the message names it and gives the error."""


class PluginError(RuntimeError):
    """A plugin the user named (``--plugin``) failed to load; the message names it, the error and what to do."""


@dataclass
class PluginSet:
    """The loaded plugins and what they registered.

    Attributes
    ----------
    manager : pluggy.PluginManager
        The manager, with every plugin that loaded registered under its name.
    measures : Registry
        Every measure, frozen.
    loaded : list of PluginInfo
        The plugins that loaded, in load order.
    failures : list of (str, str)
        ``(plugin name, one-line error)`` for each plugin that was skipped.
    blocked : list of str
        Plugins found but not imported because ``ICC_BENCH_DISABLE_PLUGINS`` names them.
    requested : dict of str to str
        Plugin name -> the ``extra`` (``--plugin``) value that asked for it.
    """

    manager: pluggy.PluginManager
    measures: Registry[Measure] = field(default_factory=Registry)
    loaded: list[PluginInfo] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    requested: dict[str, str] = field(default_factory=dict)


def check_requested(plugins: PluginSet) -> None:
    """Raise :class:`PluginError` when a plugin the user named (an ``extra`` of
    :func:`load_plugins`) failed to load; installed plugins that failed are left to the warning."""
    for name, message in plugins.failures:
        if name in plugins.requested:
            raise PluginError(
                f"--plugin {plugins.requested[name]}: {message}; fix the plugin, or leave this --plugin out"
            )


def load_plugins(
    extra: Iterable[str] = (),
    *,
    builtins: bool = True,
    entry_points: bool | Collection[str] = True,
) -> PluginSet:
    """Find, import and register plugins, run the registration hooks, and freeze the registry.

    Parameters
    ----------
    extra : iterable of str
        ``--plugin`` values: a ``.py`` file, a package folder, or a dotted module name.
    builtins : bool
        Load :data:`BUILTIN_PLUGINS`.
    entry_points : bool or collection of str
        Load the other ``icc_bench`` entry points of installed packages: all of them (True), none
        (False), or only those named (tests use this so that whatever happens to be installed
        stays out).

    Returns
    -------
    PluginSet
        Never raises for a broken plugin: it is listed in ``failures`` instead.
    """
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        manager.trace.root.setwriter(_write_stderr)
        manager.enable_tracing()
    for name in os.environ.get(DISABLE_ENV, "").split(","):
        if name.strip():
            manager.set_blocked(name.strip())

    extra = tuple(extra)
    plugins = PluginSet(manager, requested={_extra_candidate(spec)[0]: spec for spec in extra})
    _import_and_register(plugins, _candidates(extra, builtins, entry_points))
    _run_registration_hooks(plugins)
    plugins.measures.freeze()
    for name, message in plugins.failures:
        warnings.warn(f"icc-bench plugin {name!r} skipped: {message}", PluginWarning, stacklevel=2)
    return plugins


def _import_and_register(plugins: PluginSet, candidates: Iterable[tuple[str, _Loader]]) -> None:
    manager = plugins.manager
    trace = manager.trace.root.get("load")
    for name, load in candidates:
        if manager.is_blocked(name):
            plugins.blocked.append(name)
            trace(f"{name}: blocked by {DISABLE_ENV}")
            continue
        already = next((info for info in plugins.loaded if info.name == name), None)
        if already is not None:
            plugins.failures.append(
                (name, f"a plugin named {name!r} is already loaded from {already.label}; rename one of them")
            )
            continue
        try:
            plugin, info = load()
        except Exception as e:
            plugins.failures.append((name, one_line(e)))
            continue
        if manager.is_registered(plugin):
            trace(f"{name}: already loaded as {manager.get_name(plugin)!r}")
            continue
        problem = _register(manager, plugin, name)
        if problem:
            plugins.failures.append((name, problem))
            continue
        plugins.loaded.append(info)
        provider = f" ({info.distribution} {info.version})" if info.distribution else ""
        trace(f"{name}: {info.origin} {info.location}{provider}")


def _run_registration_hooks(plugins: PluginSet) -> None:
    manager = plugins.manager
    trace = manager.trace.root.get("call")
    for hook_name, make_registry in _REGISTRATION_HOOKS:
        registry = plugins.measures if make_registry is None else make_registry()
        for info in list(plugins.loaded):
            plugin = manager.get_plugin(info.name)
            if not any(impl.plugin is plugin for impl in getattr(manager.hook, hook_name).get_hookimpls()):
                continue
            # One plugin at a time, so that each registration is attributed to its plugin and a
            # plugin that raises is skipped alone; the subset caller still goes through tracing.
            others = [p for p in manager.get_plugins() if p is not plugin]
            trace(f"{hook_name} of {info.name}")
            try:
                with plugins.measures.plugin_scope(info):
                    manager.subset_hook_caller(hook_name, remove_plugins=others)(registry=registry)
            except Exception as e:
                plugins.failures.append((info.name, f"{hook_name} raised {one_line(e)}"))
                manager.unregister(plugin)
                plugins.loaded.remove(info)


def _candidates(
    extra: Iterable[str], builtins: bool, entry_points: bool | Collection[str]
) -> Iterator[tuple[str, _Loader]]:
    """``(plugin name, loader)`` for every plugin to try, in load order; nothing is imported yet."""
    by_name: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        by_name.setdefault(ep.name, ep)  # two distributions declaring one name: the first wins
    if builtins:
        for name in BUILTIN_PLUGINS:
            ep = by_name.get(name)
            yield name, (_entry_point_loader(ep) if ep else _checkout_loader(name))
    if isinstance(entry_points, str):
        entry_points = [entry_points]
    if entry_points:
        wanted = sorted(set(by_name) - set(BUILTIN_PLUGINS)) if entry_points is True else list(entry_points)
        for name in wanted:
            ep = by_name.get(name)
            yield name, (_entry_point_loader(ep) if ep else _missing_entry_point_loader(name))
    for spec in extra:
        yield _extra_candidate(spec)


def _entry_point_loader(ep: importlib.metadata.EntryPoint) -> _Loader:
    def load() -> tuple[object, PluginInfo]:
        plugin = ep.load()
        dist = ep.dist
        info = PluginInfo(
            ep.name, "entry point", ep.value,
            distribution=dist.name if dist else None, version=dist.version if dist else None,
        )
        return plugin, info

    return load


def _checkout_loader(name: str) -> _Loader:
    def load() -> tuple[object, PluginInfo]:
        from icc_bench.version import __version__

        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise  # the plugin exists, one of its own imports is missing
            raise ModuleNotFoundError(
                f"built-in plugin {name!r} is neither installed nor importable; "
                "run `pip install -e .`, or put plugins/ on PYTHONPATH in a source checkout"
            ) from None
        return module, PluginInfo(name, "source checkout", name, distribution="icc-bench", version=__version__)

    return load


def _missing_entry_point_loader(name: str) -> _Loader:
    def load() -> tuple[object, PluginInfo]:
        raise LookupError(f"no installed package declares an {ENTRY_POINT_GROUP!r} entry point named {name!r}")

    return load


def _extra_candidate(spec: str) -> tuple[str, _Loader]:
    """A ``--plugin`` value: a path when it ends in .py or contains a slash, else a module name."""
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        name = path.stem

        def load_path() -> tuple[object, PluginInfo]:
            return _import_path(path), PluginInfo(name, "file", str(path))

        return name, load_path

    def load_module() -> tuple[object, PluginInfo]:
        module = importlib.import_module(spec)
        return module, PluginInfo(spec, "module", spec, version=getattr(module, "__version__", None))

    return spec, load_module


def _import_path(path: Path) -> ModuleType:
    """Import a ``.py`` file or a package folder under a module name unique to its path."""
    if path.is_dir():
        init, search = path / "__init__.py", [str(path)]
        if not init.is_file():
            raise ImportError(f"{path} is a folder without __init__.py; pass a .py file or a package folder")
    elif path.is_file():
        init, search = path, None
    else:
        raise FileNotFoundError(f"no such plugin file or folder: {path}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    module_name = f"_icc_bench_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: dataclasses, pydantic and relative imports look modules up here.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> str | None:
    """Register ``plugin`` and check its hooks; the reason it was refused, or None."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as e:  # e.g. a hook argument its spec lacks
        # Its lines are: which plugin and hook, the definition, and the reason; all are needed.
        return f"PluginValidationError: {'; '.join(str(e).splitlines())}"
    callers = manager.get_hookcallers(plugin) or []
    known = [hook for hook in vars(hookspecs) if hook.startswith("icc_bench_")]
    problem = None
    for caller in callers:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the hooks are: {', '.join(known)}"
            problem = f"defines hook {caller.name!r}, which icc-bench does not have{hint}"
            break
    if not callers:
        unmarked = [attr for attr in dir(plugin) if attr.startswith("icc_bench_")]
        problem = (
            f"{', '.join(unmarked)} must be decorated with @icc_bench.hookimpl"
            if unmarked
            else "defines no hook (a function named icc_bench_* decorated with @icc_bench.hookimpl)"
        )
    if problem:
        manager.unregister(plugin)
    return problem


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)  # looked up on every call, so redirected stderr (pytest, rich) gets it


def measures_table(registry: Registry[Measure]) -> Table:
    """A rich table of every measure: name, family, direction, needs, plugin, settings."""
    from rich.table import Table
    from rich.text import Text

    table = Table()
    table.add_column("name", no_wrap=True)  # the key users type: never wrapped
    for column in ("family", "direction", "needs"):
        table.add_column(column)
    table.add_column("plugin", overflow="fold")
    table.add_column("settings", overflow="fold")  # folded, not cut: every setting stays readable
    for measure in registry:
        table.add_row(
            Text(measure.name),
            Text(measure.family),
            "higher = better" if measure.higher_is_better else "lower = better",
            ", ".join(need for need, flag in (("hierarchy", measure.needs_hierarchy), ("held-out inputs", measure.reads_heldout)) if flag) or "-",
            Text(measure.plugin.label if measure.plugin else "-"),
            Text(compact_settings(measure.settings)),
        )
    return table


def compact_settings(settings: BaseModel) -> str:
    """``k=30 neuron_agg=topk_mean``: every setting as key=value, floats in short form."""
    return " ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in settings.model_dump().items()
    )
