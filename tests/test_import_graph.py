"""The imports of icc_bench run one way: along the data flow, never back, never round in a cycle.

Every ``import`` and ``from ... import`` of every module of the package is read with :mod:`ast`,
the ones inside functions and under ``TYPE_CHECKING`` included (a lazy import is still a
dependency; it only runs later). Two rules:

1. no cycle: a module never reaches itself through the imports (so no module needs an import
   inside a function to break one);
2. no upward import: each module sits in one layer of :data:`LAYERS`, and imports only modules of
   its own layer or of an earlier one.

:data:`LAYERS` is the declared order, data flowing from the top of the list to the bottom:
spec -> zoo -> probe -> measures -> store -> scores -> leaderboard, with the leaves everyone
uses first and the commands last. A new module must be placed in it (the test says where it is
missing). DEVELOPERS.md draws the same order.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "icc_bench"

#: Layer name -> its modules (fnmatch patterns on dotted names), in data-flow order.
LAYERS: list[tuple[str, list[str]]] = [
    ("leaves: errors, files and hashing, device, version, specs, claims on work",
     ["icc_bench.version", "icc_bench.errors", "icc_bench.files", "icc_bench.device", "icc_bench.config",
      "icc_bench.claims"]),
    ("data and models", ["icc_bench.data", "icc_bench.data.*", "icc_bench.models", "icc_bench.models.*"]),
    ("training", ["icc_bench.train", "icc_bench.train_batched"]),
    ("zoo: records and checkpoints on disk", ["icc_bench.record", "icc_bench.zoo"]),
    ("spec -> zoo: training a population, importing one",
     ["icc_bench.population", "icc_bench.importer", "icc_bench.importer.checkpoints", "icc_bench.importer.manifest",
      "icc_bench.importer.validation", "icc_bench.importer.writing", "icc_bench.importer.template"]),
    ("probe", ["icc_bench.probe"]),
    ("measures and plugins",
     ["icc_bench.measure", "icc_bench.registry", "icc_bench.hookspecs", "icc_bench.plugins", "icc_bench.selection"]),
    ("store: values of measures", ["icc_bench.store", "icc_bench.evaluate", "icc_bench.representations_cache"]),
    ("where work runs (handed to the drivers by their callers)", ["icc_bench.executors"]),
    ("scores", ["icc_bench.scoring", "icc_bench.uncertainty", "icc_bench.reference", "icc_bench.regime",
                "icc_bench.sign_error", "icc_bench.leaderboard.model", "icc_bench.verdict", "icc_bench.scores"]),
    ("leaderboards and analyses",
     ["icc_bench.leaderboard", "icc_bench.leaderboard.*", "icc_bench.suites", "icc_bench.suite_scores",
      "icc_bench.suite_leaderboard", "icc_bench.analyze", "icc_bench.analyze.*"]),
    ("Python API", ["icc_bench.api"]),
    ("commands", ["icc_bench.cli", "icc_bench.cli.*", "icc_bench.importer.command"]),
    ("the package's public face", ["icc_bench"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The icc_bench modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name``, pkg itself.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer_of(name: str) -> int:
    matches = [i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    assert matches, f"{name} is in no layer of LAYERS: add it where it sits in the data flow"
    # An exact name wins over a pattern (icc_bench.leaderboard.model is placed before icc_bench.leaderboard.*).
    exact = [i for i in matches if name in LAYERS[i][1]]
    return (exact or matches)[0]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_the_parser_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from icc_bench.zoo import Zoo\n    from . import store\n")
    known = {"icc_bench.zoo", "icc_bench.store", "icc_bench.cli", "icc_bench.cli.m"}
    assert imports("icc_bench.cli.m", module, known) == {"icc_bench.zoo", "icc_bench.cli"}  # "." is icc_bench.cli
    assert imports("icc_bench.x", module, known) == {"icc_bench.zoo", "icc_bench.store"}


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_later_layer():
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(graph().items()) for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    cycles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [name, target]) if target in path else f"{name} -> {target}")
            elif target not in state:
                visit(target, path + [name])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_core_imports_no_plugin():
    plugins = {p.name for p in (PACKAGE.parent / "plugins").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in plugins for n in names), f"{name} imports a plugin ({names})"
