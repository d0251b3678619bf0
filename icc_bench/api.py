"""Results from Python: a zoo or a suite as pandas DataFrames, and measures computed from a notebook.

Open a population's zoo (by population name, spec path or zoo folder) or a suite, read it as
DataFrames, and compute measures through the results store and keys of ``icc-bench evaluate``:
a value computed here is reused by the command line, and the other way round.

    >>> import icc_bench
    >>> zoo = icc_bench.open_zoo("quick")       # the zoo of population quick, in runs/ ($ICC_BENCH_RUNS)
    >>> summary = zoo.train()                   # trains what the zoo lacks (nothing, the second time)
    >>> records = zoo.records()                 # one row per model: accuracies, hyperparameters
    >>> records.index.name, "test_accuracy" in records, "learning_rate" in records
    ('model_id', True, True)
    >>> c3 = zoo.compute("c3")                  # one value per model, stored in runs/quick/results.sqlite
    >>> c3.attrs["computed"] + c3.attrs["reused"] == len(records)
    True
    >>> zoo.values().columns.tolist()           # one column per measure with values in the store
    ['c3']
    >>> scores = zoo.scores(bootstrap=100)      # one row per measure, then the reference rows
    >>> print(scores.loc["c3", ["Psi", "Psi_lo", "Psi_hi", "cmi", "sign_error_robust"]].round(2).to_dict())
    {'Psi': ..., 'Psi_lo': ..., 'Psi_hi': ..., 'cmi': ..., 'sign_error_robust': ...}
    >>> bool(scores.loc["random", "reference"]), bool(scores.loc["c3", "reference"])
    (True, False)

    >>> suite = icc_bench.open_suite("laptop")  # model_zoo/suites/laptop.toml: its populations' zoos
    >>> trained = suite.train()
    >>> c3 = suite.compute("c3")                # indexed by (population, model_id)
    >>> list(suite.scores(bootstrap=100).index.names)
    ['population', 'measure']
    >>> across = suite.summary(bootstrap=100)   # one row per measure across the suite
    >>> print(across.loc["c3", ["mean", "n_mean", "worst", "worst_population", "best_on"]].to_dict())
    {'mean': ..., 'n_mean': ..., 'worst': ..., 'worst_population': '...', 'best_on': ...}

What each method returns:

======================================  ===============================================================
``zoo.records()``                       one row per model (index ``model_id``): accuracies, the eight
                                        hyperparameters, the checkpoint's sha256, the seed
``zoo.values(measures=None)``           one row per model, one column per measure, from the store (NaN
                                        where a value is missing, failed or does not apply); by default
                                        every registered measure with values stored
``zoo.scores(measures=None, ...)``      one row per measure and reference row (index ``measure``):
                                        ``psi_<axis>``, ``Psi``, ``cmi``, each with ``_lo`` / ``_hi``
                                        bootstrap bounds, ``sign_error_robust`` / ``_mean``, ``best``
                                        (best on Psi or not distinguishable from it), ``reference``
``zoo.leaderboard(...)``                the :class:`~icc_bench.leaderboard.Leaderboard` behind scores
``zoo.compute(measure, **settings)``    the measure (a registered name or a ``Measure``) on every
                                        model, computing only what the store lacks; a Series
``zoo.measure(name, **settings)``       the registered measure with the population's settings and yours
``zoo.train()``                         train what the zoo lacks (``icc-bench train``)
======================================  ===============================================================

A suite has the same methods, each population's rows under an outer index level ``population``,
and ``suite.summary()`` / ``suite.leaderboard()``: one row per measure across the suite (mean Psi,
worst population, on how many populations it is best; :mod:`icc_bench.suite_scores`).

The keys are those of the command line: a measure named here gets the population's
``[measure_settings]`` (as ``icc-bench evaluate`` applies them) and then the settings you pass, and
its values are stored under ``(model, checkpoint sha256, measure, settings hash, seed)``
(:func:`icc_bench.store.result_key`). Scoring options are those of ``icc-bench leaderboard``:
``target``, ``kendall``, ``bootstrap`` (draws; 0 for none), ``level``, ``references``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from icc_bench.config import PopulationSpec
from icc_bench.evaluate import EvaluationStats, evaluate_zoo
from icc_bench.leaderboard import Leaderboard, sign_error_value
from icc_bench.measure import Measure
from icc_bench.plugins import PluginSet, load_plugins
from icc_bench.selection import select_measures
from icc_bench.scores import measure_values, records_frame, score_zoo
from icc_bench.store import store_for
from icc_bench.suite_leaderboard import SuiteLeaderboard, table_records
from icc_bench.suites import SuiteSpec
from icc_bench.uncertainty import BootstrapSettings
from icc_bench.zoo import Zoo, ZooError

#: Where zoos live unless ``runs_dir`` says otherwise: ``$ICC_BENCH_RUNS``, else ``./runs`` (as the CLI).
RUNS_ENV = "ICC_BENCH_RUNS"

#: A measure as the methods take it: a registered name (fnmatch patterns allowed where several
#: measures are taken) or a ``Measure``.
MeasureLike = str | Measure


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def _plugin_set(plugins: Sequence[str] | PluginSet) -> PluginSet:
    return plugins if isinstance(plugins, PluginSet) else load_plugins(tuple(plugins))


class ZooResults:
    """One population's zoo, its results store, and the measures registered by the loaded plugins.

    Make one with :func:`open_zoo`. ``seed`` is the evaluation seed (probe sample, random draws),
    ``--seed`` of the CLI; ``device``, ``data_dir`` and ``executor`` are those of ``icc-bench evaluate``.
    """

    def __init__(self, zoo: Zoo, spec: PopulationSpec | None, plugins: PluginSet, *, seed: int = 0,
                 device: str | None = None, data_dir: str | Path | None = None, executor=None):
        self.zoo = zoo
        self.spec = spec
        self.plugins = plugins
        self.seed = seed
        self.device = device
        self.data_dir = data_dir
        self.executor = executor

    @property
    def name(self) -> str:
        """The population's name (the zoo folder's name for a zoo without a spec)."""
        return self.spec.name if self.spec is not None else self.zoo.root.name

    @property
    def root(self) -> Path:
        return self.zoo.root

    def __repr__(self) -> str:
        return f"<ZooResults {self.name!r} at {str(self.zoo.root)!r}: {len(self.zoo.model_ids())} models>"

    # -- training and measuring ----------------------------------------------------------------

    def train(self, *, limit: int | None = None, progress=None):
        """Train every model of the population that the zoo lacks; the ``TrainSummary``.

        As ``icc-bench train`` (:func:`icc_bench.population.train_population`); ``progress`` takes
        the CLI's progress calls, None is silent.
        """
        from icc_bench.population import train_population

        if self.spec is None:
            raise ZooError(f"{self.zoo.root}: no population spec (population.json) to train from; open the zoo by population name or spec path")
        if self.zoo.root.name != self.spec.name:
            raise ZooError(
                f"{self.zoo.root}: this folder holds population '{self.spec.name}' under another name, and training writes "
                f"into <runs>/{self.spec.name}; open it by population name with runs_dir set instead"
            )
        return train_population(self.spec, self.zoo.root.parent, data_dir=self.data_dir, device=self.device, limit=limit,
                                executor=self.executor, progress=progress)

    def measures(self, patterns: str | Sequence[str] | None = None) -> list[Measure]:
        """The registered measures matching ``patterns`` (fnmatch, comma-separated; None: all),
        with the population's ``[measure_settings]`` applied, as ``icc-bench evaluate`` selects them
        (:func:`icc_bench.selection.select_measures`)."""
        overrides = self.spec.measure_settings if self.spec is not None else {}
        return select_measures(self.plugins.measures, patterns, overrides, self.name)

    def measure(self, name: str, **settings: Any) -> Measure:
        """The registered measure ``name`` with the population's settings, then ``settings``, applied."""
        (measure,) = self.measures([self.plugins.measures.get(name).name])  # an unknown name says "did you mean"
        return measure.with_settings(**settings) if settings else measure

    def _resolve(self, measures: MeasureLike | Sequence[MeasureLike] | None) -> list[Measure]:
        if measures is None:
            return self.measures()
        if isinstance(measures, (str, Measure)):
            measures = [measures]
        resolved: list[Measure] = []
        for m in measures:
            resolved += [m] if isinstance(m, Measure) else self.measures(m)
        unique = list({(m.name, m.settings_hash): m for m in resolved}.values())
        names = [m.name for m in unique]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"measure {repeated[0]!r} is asked for with two different settings; columns are keyed by name, so ask for one at a time")
        return unique

    def evaluate(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, *, retry_errors: bool = False,
                 progress=None) -> EvaluationStats:
        """Fill the store with every missing value of ``measures`` (default: every registered
        measure) on every model, as ``icc-bench evaluate --no-train`` does; the counts."""
        return evaluate_zoo(
            self.zoo, self._resolve(measures), device=self.device, data_dir=self.data_dir, seed=self.seed,
            retry_errors=retry_errors, executor=self.executor, progress=progress,
        )

    def compute(self, measure: MeasureLike, *, retry_errors: bool = False, **settings: Any) -> pd.Series:
        """Compute ``measure`` on every model (only the values the store lacks) and return its values.

        ``measure`` is a registered name (with the population's settings, then ``settings``) or a
        ``Measure`` (``settings`` applied to it). The Series is indexed by ``model_id`` and named
        after the measure; NaN where the measure failed or does not apply. ``.attrs`` holds the
        counts: ``computed``, ``reused``, ``errors``, ``not_applicable``.
        """
        if isinstance(measure, Measure):
            m = measure.with_settings(**settings) if settings else measure
        else:
            m = self.measure(measure, **settings)
        stats = self.evaluate([m], retry_errors=retry_errors)
        values = self.values([m])[m.name]
        values.attrs = {"computed": stats.computed, "reused": stats.reused, "errors": stats.errors, "not_applicable": stats.not_applicable}
        return values

    # -- reading -------------------------------------------------------------------------------

    def records(self) -> pd.DataFrame:
        """One row per model (index ``model_id``): sha256, seed, accuracies, hyperparameters."""
        frame = records_frame(self.zoo)
        return frame.set_index("model_id") if not frame.empty else frame

    def stored_measures(self, measures: MeasureLike | Sequence[MeasureLike] | None = None) -> list[Measure]:
        """Those of ``measures`` (default: every registered one) with at least one value (or
        error) in the store, under this seed: what ``icc-bench leaderboard`` scores."""
        candidates = self._resolve(measures)
        if not self.zoo.model_ids():
            return []
        with store_for(self.zoo) as store:
            return store.stored(candidates, self.seed)

    def values(self, measures: MeasureLike | Sequence[MeasureLike] | None = None) -> pd.DataFrame:
        """One row per model (index ``model_id``), one column per measure, from the store.

        ``measures`` None: every registered measure with values stored. NaN where the value is
        missing, failed or does not apply. Computes nothing.
        """
        chosen = self.stored_measures() if measures is None else self._resolve(measures)
        models = records_frame(self.zoo)
        if models.empty:
            return pd.DataFrame(columns=[m.name for m in chosen], index=pd.Index([], name="model_id"), dtype=float)
        columns = {}
        with store_for(self.zoo) as store:
            for m in chosen:
                columns[m.name] = measure_values(store, models, m, self.seed)[0]
        return pd.DataFrame(columns, index=pd.Index(models["model_id"], name="model_id"), columns=[m.name for m in chosen])

    def leaderboard(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, *, target: str = "test_accuracy",
                    kendall: str = "tau_a", bootstrap: int = 1000, level: float = 0.9, references: bool = True,
                    sign_error: bool = False, command: str = "") -> Leaderboard:
        """The :class:`~icc_bench.leaderboard.Leaderboard` of ``measures`` (default: those with
        values stored), scored from the store as ``icc-bench leaderboard`` does; computes no measure."""
        chosen = self.stored_measures() if measures is None else self._resolve(measures)
        if not chosen:
            raise ZooError(f"{self.zoo.root}: the results store holds no values of the selected measures; compute some first (zoo.compute or icc-bench evaluate)")
        return score_zoo(
            self.zoo, chosen, target=target, kendall=kendall, command=command, seed=self.seed,
            bootstrap=BootstrapSettings(draws=bootstrap, level=level, seed=self.seed), references=references,
            show_sign_error=sign_error,
        )

    def scores(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> pd.DataFrame:
        """One row per measure, then the reference rows (index ``measure``); ``options`` those of
        :meth:`leaderboard`. See :func:`leaderboard_frame` for the columns."""
        return leaderboard_frame(self.leaderboard(measures, **options))


def leaderboard_frame(lb: Leaderboard) -> pd.DataFrame:
    """A leaderboard as a DataFrame, one row per measure or reference row (index ``measure``).

    Columns: ``family``, ``reference``, ``higher_is_better``; ``psi_<axis>`` per axis, ``Psi`` and
    ``cmi``, each followed by ``_lo`` and ``_hi`` (its bootstrap interval; NaN without one);
    ``sign_error_robust`` and ``sign_error_mean`` (NaN without stored test predictions); ``best``
    (best on Psi, or not distinguishable from the best); ``n_models``, ``n_errors``,
    ``not_applicable`` (the reason, or None) and ``settings_hash``.
    """
    nan = float("nan")
    rows = []
    for row in lb.rows:
        record: dict[str, Any] = {"measure": row.measure, "family": row.family, "reference": row.reference,
                                  "higher_is_better": row.higher_is_better}
        columns = [(f"psi_{axis}", axis, row.per_axis.get(axis, nan)) for axis in lb.axes]
        columns += [("Psi", "total", row.total), ("cmi", "cmi", row.cmi)]
        for column, key, value in columns:
            lo, hi = row.intervals.get(key, (nan, nan))
            record[column] = value
            record[f"{column}_lo"] = nan if lo is None else lo
            record[f"{column}_hi"] = nan if hi is None else hi
        record.update(
            sign_error_robust=sign_error_value(row, "robust"), sign_error_mean=sign_error_value(row, "mean"),
            best=row.measure in lb.best.get("total", []), n_models=row.n_models, n_errors=len(row.errors),
            not_applicable=row.not_applicable, settings_hash=row.settings_hash,
        )
        rows.append(record)
    return pd.DataFrame(rows).set_index("measure")


class SuiteResults:
    """The zoos of a suite's populations; the methods of :class:`ZooResults` over all of them.

    Make one with :func:`open_suite`. ``suite.zoos`` maps each population to its ``ZooResults``
    (also ``suite["quick"]``).
    """

    def __init__(self, suite: SuiteSpec, zoos: dict[str, ZooResults]):
        self.suite = suite
        self.zoos = zoos

    @property
    def name(self) -> str:
        return self.suite.name

    def __getitem__(self, population: str) -> ZooResults:
        try:
            return self.zoos[population]
        except KeyError:
            raise KeyError(f"suite {self.name!r} has no population {population!r}; it has: {', '.join(self.zoos)}") from None

    def __repr__(self) -> str:
        return f"<SuiteResults {self.name!r}: {', '.join(self.zoos)}>"

    def train(self, **options: Any) -> dict[str, Any]:
        """Train what each zoo lacks; the ``TrainSummary`` per population."""
        return {name: zoo.train(**options) for name, zoo in self.zoos.items()}

    def evaluate(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> dict[str, EvaluationStats]:
        """Fill each zoo's store with the missing values of ``measures``; the counts per population."""
        return {name: zoo.evaluate(measures, **options) for name, zoo in self.zoos.items()}

    def compute(self, measure: MeasureLike, **settings: Any) -> pd.Series:
        """:meth:`ZooResults.compute` on every population, indexed by ``(population, model_id)``."""
        return _concat({name: zoo.compute(measure, **settings) for name, zoo in self.zoos.items()})

    def records(self) -> pd.DataFrame:
        return _concat({name: zoo.records() for name, zoo in self.zoos.items()})

    def values(self, measures: MeasureLike | Sequence[MeasureLike] | None = None) -> pd.DataFrame:
        return _concat({name: zoo.values(measures) for name, zoo in self.zoos.items()})

    def leaderboards(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> list[Leaderboard]:
        """Each population's leaderboard, in suite order (options of :meth:`ZooResults.leaderboard`)."""
        return [zoo.leaderboard(measures, **options) for zoo in self.zoos.values()]

    def scores(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> pd.DataFrame:
        """Every population's scores, indexed by ``(population, measure)``."""
        return _concat({lb.population: leaderboard_frame(lb) for lb in self.leaderboards(measures, **options)})

    def leaderboard(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> SuiteLeaderboard:
        """The suite leaderboard (:func:`icc_bench.suite_scores.score_suite`); computes no measure."""
        from icc_bench.suite_scores import score_suite

        return score_suite(self.suite, self.leaderboards(measures, **options), command=options.get("command", ""))

    def summary(self, measures: MeasureLike | Sequence[MeasureLike] | None = None, **options: Any) -> pd.DataFrame:
        """The suite leaderboard as a DataFrame, one row per measure (index ``measure``): per
        population ``Psi_<population>`` with ``_lo`` / ``_hi``, ``mean`` over ``n_mean``
        populations, ``worst`` and ``worst_population``, ``best_on``."""
        return pd.DataFrame(table_records(self.leaderboard(measures, **options))).set_index("measure")


def _concat(parts: dict[str, pd.Series | pd.DataFrame]):
    return pd.concat(parts, names=["population"])


def open_zoo(target: str | Path, *, runs_dir: str | Path | None = None, plugins: Sequence[str] | PluginSet = (),
             seed: int = 0, device: str | None = None, data_dir: str | Path | None = None, executor=None) -> ZooResults:
    """A population's zoo, as :class:`ZooResults`.

    ``target`` is an existing zoo folder (``runs/quick``), or a population name or spec path, whose
    zoo is ``<runs_dir>/<name>`` (it may not exist yet: ``.train()`` makes it). ``runs_dir``
    defaults to ``$ICC_BENCH_RUNS`` or ``./runs``; ``plugins`` are ``--plugin`` values (files,
    folders, modules) or an already loaded ``PluginSet``; ``seed`` is the CLI's ``--seed``.
    """
    from icc_bench.population import find_spec

    path = Path(target)
    if path.is_dir():
        zoo = Zoo(path)
        spec_json = zoo.read_spec()
        if spec_json is None and not zoo.model_ids():
            raise ZooError(f"{path}: not a zoo (no population.json and no models/*.json); pass a population name or a zoo folder")
        spec = PopulationSpec.model_validate(spec_json) if spec_json else None
    else:
        spec = find_spec(str(target))
        zoo = Zoo(Path(runs_dir if runs_dir is not None else default_runs_dir()) / spec.name)
    return ZooResults(zoo, spec, _plugin_set(plugins), seed=seed, device=device, data_dir=data_dir, executor=executor)


def open_suite(suite: str | Path | SuiteSpec, *, runs_dir: str | Path | None = None, plugins: Sequence[str] | PluginSet = (),
               seed: int = 0, device: str | None = None, data_dir: str | Path | None = None, executor=None) -> SuiteResults:
    """A suite (a name in ``model_zoo/suites/``, a path, or a ``SuiteSpec``) as :class:`SuiteResults`:
    each population's zoo in ``<runs_dir>/<population>``, options as :func:`open_zoo`."""
    from icc_bench.population import find_spec
    from icc_bench.suites import find_suite

    spec = suite if isinstance(suite, SuiteSpec) else find_suite(str(suite))
    loaded = _plugin_set(plugins)  # once, shared by every population
    runs = Path(runs_dir if runs_dir is not None else default_runs_dir())
    zoos = {}
    for name in spec.populations:
        population = find_spec(name)
        zoos[name] = ZooResults(Zoo(runs / population.name), population, loaded, seed=seed, device=device, data_dir=data_dir, executor=executor)
    return SuiteResults(spec, zoos)
