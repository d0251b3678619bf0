"""``icc-bench``: the command line.

    icc-bench populations                       the population specs and what they hold
    icc-bench train POPULATION                  train what the zoo of POPULATION is missing
    icc-bench measures                          every registered measure
    icc-bench evaluate [POPULATION | ZOO_DIR]   train what is missing, measure, score, leaderboard
    icc-bench evaluate --suite NAME             the same for every population of a suite, and one
                                                leaderboard over them (icc_bench.suite_commands)
    icc-bench leaderboard ZOO_DIR               re-render the leaderboard from the results store
    icc-bench leaderboard --suite NAME          re-render a suite's leaderboard

Expected failures (a bad spec, a missing data folder, a corrupt checkpoint, a bad option) print one
line and exit with status 2; nothing already written is touched, and a command refused for bad input
writes nothing. Options every command shares (``--device``, ``--measures``, ``--plugin``) are
checked here, before any command starts, so that the check is the same everywhere.

A model whose files do not check out (an edited record, an altered or missing checkpoint) costs
only itself: ``train`` and ``evaluate`` do everything else, then list it (``refused:``) and exit
with status 2; ``evaluate`` writes no leaderboard then. SIGTERM stops a command as Ctrl-C does
(exit status 143), closing the results store and releasing the work this process claimed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Leaderboards are wide: when the output is not a terminal (a log, a pipe), render at 160 columns
# rather than rich's default 80, which would fold every number.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

DEFAULT_RUNS = "runs"


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _expected_errors() -> tuple[type[BaseException], ...]:
    from icc_bench.config import SpecError
    from icc_bench.zoo import ZooError

    from icc_bench.data import DataError
    from icc_bench.executors import ExecutorError
    from icc_bench.measure import InvalidSettingsError
    from icc_bench.analyze import AnalysisError
    from icc_bench.plugins import PluginError
    from icc_bench.registry import UnknownMeasureError

    return (
        UserError, SpecError, ZooError, DataError, InvalidSettingsError, UnknownMeasureError, AnalysisError, ExecutorError,
        PluginError,
    )


# -- populations ---------------------------------------------------------------------------------
def cmd_populations(args: argparse.Namespace) -> int:
    from icc_bench.config import load_spec
    from icc_bench.population import available_specs, expand

    table = Table(title="Population specs", title_justify="left")
    for col in ("name", "models", "dataset", "architecture", "epochs"):
        table.add_column(col, no_wrap=True)
    table.add_column("description", overflow="fold")
    for name, path in available_specs().items():
        spec = load_spec(path)
        arch = spec.architecture
        table.add_row(
            name, str(len(expand(spec))), spec.dataset.name, f"{arch.name} (width {arch.base_width})",
            str(spec.schedule.epochs), spec.description,
        )
    console.print(table)
    return 0


# -- train ---------------------------------------------------------------------------------------
class _RichProgress:
    """A rich Progress with the columns every command shows: what, bar, done of total, elapsed,
    remaining, and a free-text ``info`` field."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


class TrainProgress(_RichProgress):
    """Models done of total (with elapsed/remaining), and the current model's epochs."""

    def start(self, total: int, done: int) -> None:
        self.models_task = self.progress.add_task("models", total=total, completed=done, info="")
        self.epoch_task = self.progress.add_task("  epochs", total=1, completed=0, info="", visible=False)

    def model_started(self, job) -> None:
        self.progress.reset(self.epoch_task, total=job.schedule.epochs, completed=0, visible=True, info=job.model_id)

    def epoch(self, job, stats) -> None:
        test = "-" if stats.test_accuracy is None else f"{stats.test_accuracy:.3f}"  # untested epoch: Schedule.test_every
        self.progress.update(
            self.epoch_task, completed=stats.epoch,
            info=f"{job.model_id}  loss {stats.train_loss:.3g}  train {stats.train_accuracy:.3f}  test {test}",
        )

    def model_done(self, job, record) -> None:
        self.progress.advance(self.models_task)
        self.progress.update(self.models_task, info=f"last: {job.model_id} test {record['test_accuracy']:.3f}")

    def waiting(self, n_models: int) -> None:
        self.progress.update(self.epoch_task, visible=False)
        self.progress.update(self.models_task, info=f"waiting for {n_models} model(s) another process is training")


def _spread(values: list[float]) -> str:
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"


def print_train_summary(summary) -> None:
    records = summary.records
    console.print(
        f"[bold]{escape(summary.population)}[/]: {len(records)}/{summary.total} models in the zoo "
        f"({summary.trained} trained now in {summary.seconds:.0f} s, {summary.already_done} already there"
        + (f", {summary.trained_elsewhere} trained meanwhile by another process" if summary.trained_elsewhere else "")
        + (f", {len(summary.refused)} refused" if summary.refused else "")
        + (f", {summary.remaining} still missing" if summary.remaining else "") + ")"
    )
    if not records:
        return
    train = [r["train_accuracy"] for r in records]
    test = [r["test_accuracy"] for r in records]
    console.print(f"  train accuracy  {_spread(train)}")
    console.print(f"  test accuracy   {_spread(test)}")
    stopped = sum(bool(r.get("reached_loss_stop")) for r in records)
    console.print(f"  {stopped}/{len(records)} stopped at the training-loss threshold")
    # The paper's regime (SPEC §4): do the models fit, and does test accuracy spread beyond its noise?
    from icc_bench.regime import population_regime

    regime = population_regime(records)
    console.print(f"  regime: {regime.summary()}", highlight=False, soft_wrap=True)
    if regime.warning():
        console.print(f"  [yellow]warning:[/] {summary.population} is {regime.warning()}", highlight=False, soft_wrap=True)


def cmd_train(args: argparse.Namespace) -> int:
    from icc_bench.executors import make_executor
    from icc_bench.population import find_spec, train_population

    spec = find_spec(args.population)
    configured_measures(_load_plugins(args), spec)  # a bad [measure_settings] fails now, not after training
    executor = make_executor(args)
    with TrainProgress(console) as progress:
        summary = train_population(
            spec, args.runs_dir, data_dir=args.data_dir, device=args.device, limit=args.limit,
            executor=executor, progress=progress,
        )
    print_train_summary(summary)
    _stop_if_refused(dict(summary.refused), summary.total, "the others are trained")
    return 0


def _stop_if_refused(refused: dict[str, str], total: int, others: str) -> None:
    """Report each model whose files do not check out, one line each, and stop with exit status 2."""
    if not refused:
        return
    for message in refused.values():
        err_console.print(f"[red]refused:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise UserError(
        f"{len(refused)} of {total} models refused (above), {others}; icc-bench neither uses nor overwrites them: "
        "restore their files, or delete them to retrain those models, then run the same command again"
    )


# -- measures ------------------------------------------------------------------------------------
def _load_plugins(args: argparse.Namespace):
    """The plugins, loaded once per command: a ``--plugin`` the user named that fails stops the
    command (``PluginError``); an installed plugin that fails is skipped with a warning."""
    import warnings

    from icc_bench.plugins import PluginWarning, check_requested, load_plugins

    if getattr(args, "_plugins", None) is not None:
        return args._plugins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # reported once, below
        plugins = load_plugins(getattr(args, "plugin", None) or ())
    check_requested(plugins)
    for name, message in plugins.failures:
        err_console.print(f"[yellow]warning:[/] plugin {escape(repr(name))} skipped: {escape(message)}", highlight=False, soft_wrap=True)
    args._plugins = plugins
    return plugins


def cmd_measures(args: argparse.Namespace) -> int:
    from icc_bench.plugins import measures_table

    plugins = _load_plugins(args)
    console.print(measures_table(plugins.measures))
    return 0


# -- evaluate ------------------------------------------------------------------------------------
class EvaluateProgress(_RichProgress):
    """Rich progress over models x measures."""

    def start(self, total: int, done: int) -> None:
        self.task = self.progress.add_task("measures", total=total, completed=done, info="")

    def model(self, model_id: str) -> None:
        self.progress.update(self.task, info=model_id)

    def value(self, model_id: str, measure: str, status: str) -> None:
        self.progress.advance(self.task)
        self.progress.update(self.task, info=f"{model_id}  {measure}" + ("" if status == "ok" else f" ({status})"))

    def waiting(self, n_models: int) -> None:
        self.progress.update(self.task, info=f"waiting for {n_models} model(s) another process is measuring")


def _resolve_target(target: str) -> tuple:
    """A population name or spec path -> (spec, zoo); an existing zoo folder -> (its spec, zoo)."""
    from icc_bench.config import PopulationSpec
    from icc_bench.population import find_spec
    from icc_bench.zoo import Zoo

    path = Path(target)
    if path.is_dir():
        zoo = Zoo(path)
        spec_json = zoo.read_spec()
        if spec_json is None and not zoo.model_ids():
            raise UserError(f"{path}: not a zoo (no population.json and no models/*.json); pass a population name or a zoo folder")
        return (PopulationSpec.model_validate(spec_json) if spec_json else None), zoo
    return find_spec(target), None


def configured_measures(plugins, spec) -> dict:
    """The measures a spec's ``[measure_settings]`` configures, by name, with those settings applied.

    Refuses, naming the population and the table, a name no plugin registered and a setting the
    measure's settings model rejects: ``train`` checks this before it trains anything.
    """
    from icc_bench.measure import InvalidSettingsError

    configured = {}
    for name, settings in (spec.measure_settings if spec is not None else {}).items():
        where = f"population '{spec.name}': [measure_settings.{name}]"
        if name not in plugins.measures:
            import difflib

            close = difflib.get_close_matches(name, plugins.measures.names(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"{where} names no registered measure; {hint}see `icc-bench measures` (or add the --plugin that registers it)")
        try:
            configured[name] = plugins.measures.get(name).with_settings(**settings)
        except InvalidSettingsError as e:
            raise UserError(f"{where}: {e}") from None
    return configured


def _selected_measures(plugins, patterns: str | None, spec) -> list:
    configured = configured_measures(plugins, spec)
    return [configured.get(m.name, m) for m in plugins.measures.list(patterns)]


def _write_and_show(lb, out_dir: Path, stem: str) -> None:
    from icc_bench.leaderboard import render_terminal, write_leaderboard

    render_terminal(lb, console)
    paths = write_leaderboard(lb, out_dir, stem)
    console.print("written: " + ", ".join(str(p) for p in paths), highlight=False)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.suite is not None:
        from icc_bench.suite_commands import evaluate_suite

        return evaluate_suite(args)
    from icc_bench.evaluate import evaluate_zoo
    from icc_bench.scores import score_zoo
    from icc_bench.executors import make_executor
    from icc_bench.population import train_population
    from icc_bench.zoo import Zoo

    spec, zoo = _resolve_target(args.target)
    plugins = _load_plugins(args)
    measures = _selected_measures(plugins, args.measures, spec)  # bad patterns fail before any work
    executor = make_executor(args)
    refused: dict[str, str] = {}
    if zoo is None:
        zoo = Zoo(Path(args.runs_dir) / spec.name)
        if not args.no_train:
            with TrainProgress(console) as progress:
                summary = train_population(
                    spec, args.runs_dir, data_dir=args.data_dir, device=args.device, executor=executor, progress=progress
                )
            print_train_summary(summary)
            refused.update(summary.refused)
    if not zoo.model_ids():
        raise UserError(f"{zoo.root}: no trained models to evaluate; run without --no-train, or `icc-bench train {spec.name}`")
    with EvaluateProgress(console) as progress:
        stats = evaluate_zoo(
            zoo, measures, device=args.device, data_dir=args.data_dir, seed=args.seed,
            retry_errors=args.retry_errors, executor=executor, progress=progress, allow_factories=args.allow_factory,
        )
    console.print(
        f"measured: {stats.computed} values computed, {stats.reused} reused from {zoo.root / 'results.sqlite'}"
        + (f", {stats.errors} errors" if stats.errors else "")
        + (f", {stats.not_applicable} not applicable" if stats.not_applicable else "")
        + f" ({stats.seconds:.0f} s)", highlight=False,
    )
    refused.update(stats.refused)
    # No leaderboard from a zoo with refused models: it would rank a population that is not the one trained.
    _stop_if_refused(refused, len(zoo.model_ids()), "the values of the others are computed and stored")
    lb = score_zoo(zoo, measures, **_scoring_options(args))
    _write_and_show(lb, Path(args.out) if args.out else zoo.root, lb.population)
    return 0


def _scoring_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``score_zoo`` that the scoring options set (bad values are one sentence)."""
    from icc_bench.uncertainty import BootstrapSettings

    try:
        bootstrap = BootstrapSettings(draws=args.bootstrap, level=args.ci, seed=args.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    return {"target": args.target_metric, "kendall": args.kendall, "command": _command_line(args), "seed": args.seed,
            "bootstrap": bootstrap, "show_sign_error": "sign-error" in args.score}


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.suite is not None or args.zoo is None:
        from icc_bench.suite_commands import leaderboard_suite

        return leaderboard_suite(args)
    from icc_bench.evaluate import store_for
    from icc_bench.store import measure_key
    from icc_bench.scores import score_zoo

    path = Path(args.zoo)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise UserError(f"{path}: {what}; pass the folder a population was trained into (e.g. runs/quick)")
    spec, zoo = _resolve_target(args.zoo)
    plugins = _load_plugins(args)
    measures = _selected_measures(plugins, args.measures, spec)
    with store_for(zoo) as store:
        stored = {(r.measure, r.settings_hash, r.seed) for r in store.results()}
    measures = [m for m in measures if measure_key(m, args.seed) in stored]
    if not measures:
        raise UserError(f"{zoo.root}: the results store holds no values of the selected measures; run `icc-bench evaluate {zoo.root}` first")
    lb = score_zoo(zoo, measures, **_scoring_options(args))
    _write_and_show(lb, Path(args.out) if args.out else zoo.root, lb.population)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    return "icc-bench " + shlex.join(args.argv)


# -- parser --------------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser) -> None:
    from icc_bench.executors import add_executor_arguments

    p.add_argument("--runs-dir", default=os.environ.get("ICC_BENCH_RUNS", DEFAULT_RUNS), help="where zoos live (default: ./runs or $ICC_BENCH_RUNS)")
    p.add_argument("--data-dir", default=None, help="local folder with CIFAR in its python layout (default: $ICC_BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    add_executor_arguments(p)


def _factory(text: str) -> str:
    """An argparse type: ``module:function`` (a leading ``factory:`` is dropped)."""
    import re

    name = text.removeprefix("factory:")
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name):
        raise argparse.ArgumentTypeError(f"{text!r}: write MODULE:FUNCTION, as in the zoo's factory:MODULE:FUNCTION")
    return name


def _count(text: str) -> int:
    """An argparse type: an integer of 0 or more."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give 0 or more")
    return n


def build_parser() -> argparse.ArgumentParser:
    from icc_bench import __version__
    from icc_bench.suite_commands import add_suite_arguments

    parser = _Parser(prog="icc-bench", description="Does a generalization measure predict generalization?")
    parser.add_argument("--version", action="version", version=f"icc-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("populations", help="list the population specs")
    p.set_defaults(func=cmd_populations)

    p = sub.add_parser("train", help="train what a population's zoo is missing")
    p.add_argument("population", help="a spec name (see `icc-bench populations`) or a path to a .toml spec")
    _add_common(p)
    p.add_argument("--limit", type=_count, default=None, help="train at most N missing models in this call")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help="a plugin whose measures the spec's [measure_settings] configure (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("measures", help="list every registered measure")
    _add_plugin(p)
    p.set_defaults(func=cmd_measures)

    p = sub.add_parser("evaluate", help="train what is missing, compute the measures, print the leaderboard")
    p.add_argument("target", nargs="?", default="quick", metavar="POPULATION | ZOO_DIR", help="a spec name or path, or a zoo folder (default: quick)")
    _add_common(p)
    _add_scoring(p)
    p.add_argument("--no-train", action="store_true", help="measure only the models already in the zoo")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe sample and of stochastic measures (default 0)")
    p.add_argument("--retry-errors", action="store_true", help="recompute values whose measure raised last time")
    p.add_argument("--allow-factory", action="append", default=[], type=_factory, metavar="MODULE:FUNCTION", help="build the models of an imported zoo whose architecture is factory:MODULE:FUNCTION, by importing MODULE (repeatable; only for code you trust)")
    add_suite_arguments(p, positional="target")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("leaderboard", help="re-render a zoo's leaderboard from its results store (computes nothing)")
    p.add_argument("zoo", metavar="ZOO_DIR", nargs="?", help="a zoo folder (or --suite NAME)")
    _add_scoring(p)
    p.add_argument("--seed", type=int, default=0, help="the seed the values were computed with (default 0)")
    add_suite_arguments(p, positional="zoo", runs_dir=True)
    p.set_defaults(func=cmd_leaderboard)

    from icc_bench.analyze import add_analyze_parser

    add_analyze_parser(sub)

    from icc_bench.importer import add_import_parser

    add_import_parser(sub)
    return parser


def _add_plugin(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help="load a measure plugin from a .py file or a module (repeatable)")


def _add_scoring(p: argparse.ArgumentParser) -> None:
    _add_plugin(p)
    p.add_argument("--measures", default=None, metavar="PATTERN", help="measures to use, comma-separated fnmatch patterns (e.g. 'c*,inv_sigma*')")
    p.add_argument("--target", dest="target_metric", choices=("test_accuracy", "generalization_gap"), default="test_accuracy", help="what the measures should predict (default: test_accuracy)")
    p.add_argument("--kendall", choices=("tau_a", "tau_b"), default="tau_a", help="Kendall variant (default: tau_a)")
    p.add_argument("--out", default=None, help="folder for the leaderboard files (default: the zoo folder)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap draws for the intervals; 0 switches them off (default 1000)")
    p.add_argument("--ci", type=float, default=0.9, metavar="LEVEL", help="coverage of the intervals and level of 'not distinguishable' (default 0.9)")
    p.add_argument("--score", action="append", default=[], choices=("sign-error",), help="extra leaderboard columns: sign-error (robust and mean; always in the JSON)")


def check_device(device: str | None, *, on_ray: bool = False) -> None:
    """Refuse a ``--device`` this machine cannot use, before any command writes anything.

    On Ray the device is the workers' (a head node without a GPU may drive GPU workers), so only
    its spelling is checked here; the executor checks the rest against the cluster.
    """
    if device is None or device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device}: not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device}: icc-bench runs on cpu, cuda or mps; use one of those, or auto")
    if on_ray:
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"--device {device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine; use --device cpu (or auto)")


def _check_shared_options(args: argparse.Namespace) -> None:
    """The options several commands share, checked once for all of them."""
    if hasattr(args, "device"):
        check_device(args.device, on_ray=getattr(args, "executor", "local") == "ray")
    measures = getattr(args, "measures", None)
    if measures is not None and not any(p.strip() for p in measures.split(",")):
        raise UserError(f"--measures {measures!r} names no measure; pass names or patterns, e.g. 'c1,c3' or 'inv_*' (see `icc-bench measures`)")
    if getattr(args, "plugin", None):
        _load_plugins(args)  # a --plugin that fails stops every command the same way


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised like Ctrl-C so that every open file,
    results store and claim on work is closed on the way out."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_on_one_line():
    """icc-bench's own warnings (e.g. an unsealed zoo) as one ``warning:`` line; others as Python shows them."""
    import warnings

    from icc_bench.zoo import ZooWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ZooWarning):
                err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with _sigterm_as_interrupt(), _warnings_on_one_line():
            _check_shared_options(args)
            return args.func(args)
    except _expected_errors() as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt as e:
        err_console.print("interrupted: every model recorded so far is kept; run the same command again to resume")
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
