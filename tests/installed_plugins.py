"""Keep the plugins that happen to be installed out of a test that counts lines on stderr.

A plugin of the ``icc_bench`` entry-point group that fails to load is, rightly, a warning line on
stderr; which ones are installed depends on the environment (the shared virtualenv may hold newer
plugins than this checkout's icc-bench supports). Tests that assert "one line on stderr" block every
entry point but the built-ins, through ``ICC_BENCH_DISABLE_PLUGINS`` (subprocesses inherit it).
"""

from __future__ import annotations

import importlib.metadata

from icc_bench.plugins import BUILTIN_PLUGINS, DISABLE_ENV, ENTRY_POINT_GROUP


def block_installed_plugins(monkeypatch) -> None:
    others = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN_PLUGINS)
    if others:
        monkeypatch.setenv(DISABLE_ENV, ",".join(sorted(others)))
