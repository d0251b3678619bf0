"""Which measures a command uses: the one selection of ``evaluate``, ``leaderboard``, ``train``,
``analyze`` and :mod:`icc_bench.api`.

A selection is fnmatch patterns over the registered measures (:meth:`icc_bench.registry.Registry.list`),
each measure then given the population's ``[measure_settings]``: every entry point gets the same
measures with the same settings, hence the same settings hashes and the same stored values.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from icc_bench.config import SpecError
from icc_bench.measure import InvalidSettingsError, Measure
from icc_bench.registry import Registry


def configured_measures(measures: Registry, measure_settings: Mapping[str, Mapping[str, Any]], population: str) -> dict[str, Measure]:
    """The measures a population's ``[measure_settings]`` configures, by name, with those settings applied.

    Refuses (``SpecError``), naming the population and the table, a name no plugin registered and
    a setting the measure's settings model rejects: ``train`` checks this before it trains anything.
    """
    configured = {}
    for name, settings in measure_settings.items():
        where = f"population '{population}': [measure_settings.{name}]"
        if name not in measures:
            close = difflib.get_close_matches(name, measures.names(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SpecError(f"{where} names no registered measure; {hint}see `icc-bench measures` (or add the --plugin that registers it)")
        try:
            configured[name] = measures.get(name).with_settings(**settings)
        except InvalidSettingsError as e:
            raise SpecError(f"{where}: {e}") from None
    return configured


def select_measures(
    measures: Registry, patterns: str | list[str] | None, measure_settings: Mapping[str, Mapping[str, Any]] | None = None,
    population: str = "",
) -> list[Measure]:
    """The registered measures matching ``patterns`` (:meth:`Registry.list`), each with the
    population's ``[measure_settings]`` applied (:func:`configured_measures`): the measures, and so
    the settings hashes, that ``evaluate``, ``leaderboard``, ``analyze`` and :mod:`icc_bench.api`
    all use on one zoo."""
    configured = configured_measures(measures, measure_settings or {}, population)
    return [configured.get(m.name, m) for m in measures.list(patterns)]
