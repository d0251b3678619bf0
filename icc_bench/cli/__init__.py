"""``icc-bench``: the command line.

    icc-bench populations                       the population specs and what they hold
    icc-bench train POPULATION                  train what the zoo of POPULATION is missing
    icc-bench measures                          every registered measure
    icc-bench evaluate [POPULATION | ZOO_DIR]   train what is missing, measure, score, leaderboard
    icc-bench evaluate --suite NAME             the same for every population of a suite, and one
                                                leaderboard over them (icc_bench.cli.suite)
    icc-bench leaderboard ZOO_DIR               re-render the leaderboard from the results store
    icc-bench leaderboard --suite NAME          re-render a suite's leaderboard

    icc-bench analyze ...                       the paper's analyses (icc_bench.cli.analyze)
    icc-bench import MANIFEST --to ZOO_DIR      a population trained elsewhere (icc_bench.importer.command)

Expected failures (a bad spec, a missing data folder, a corrupt checkpoint, a bad option) print one
line and exit with status 2; nothing already written is touched, and a command refused for bad input
writes nothing. Options every command shares (``--device``, ``--measures``, ``--plugin``) are
defined once (:mod:`icc_bench.cli.options`) and checked here, before any command starts, so that
the check is the same everywhere.

The package: :mod:`~icc_bench.cli.output` (consoles, the one progress display),
:mod:`~icc_bench.cli.options` (the shared options, plugin loading, measure selection),
:mod:`~icc_bench.cli.commands` (populations, train, measures, evaluate, leaderboard),
:mod:`~icc_bench.cli.suite` (``--suite``), :mod:`~icc_bench.cli.analyze`; this module builds the
parser and runs a command.

A model whose files do not check out (an edited record, an altered or missing checkpoint) costs
only itself: ``train`` and ``evaluate`` do everything else, then list it (``refused:``) and exit
with status 2; ``evaluate`` writes no leaderboard then. SIGTERM stops a command as Ctrl-C does
(exit status 143), closing the results store and releasing the work this process claimed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from rich.markup import escape

from icc_bench.cli.commands import (
    cmd_evaluate,
    cmd_leaderboard,
    cmd_measures,
    cmd_populations,
    cmd_train,
    print_train_summary,
)
from icc_bench.cli.options import DEFAULT_RUNS, add_common, add_plugin, add_scoring, add_seed, check_shared_options
from icc_bench.cli.output import console, err_console, warnings_on_one_line
from icc_bench.errors import UserError

__all__ = ["DEFAULT_RUNS", "UserError", "build_parser", "console", "err_console", "main", "print_train_summary"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _expected_errors() -> tuple[type[BaseException], ...]:
    from icc_bench.analyze import AnalysisError
    from icc_bench.config import SpecError
    from icc_bench.data import DataError
    from icc_bench.executors import ExecutorError
    from icc_bench.measure import InvalidSettingsError
    from icc_bench.plugins import PluginError
    from icc_bench.registry import UnknownMeasureError
    from icc_bench.zoo import ZooError

    return (
        UserError, SpecError, ZooError, DataError, InvalidSettingsError, UnknownMeasureError, AnalysisError, ExecutorError,
        PluginError,
    )


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
    from icc_bench.cli.analyze import add_analyze_parser
    from icc_bench.cli.suite import add_suite_arguments
    from icc_bench.importer.command import add_import_parser
    from icc_bench.version import __version__

    parser = _Parser(prog="icc-bench", description="Does a generalization measure predict generalization?")
    parser.add_argument("--version", action="version", version=f"icc-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("populations", help="list the population specs")
    p.set_defaults(func=cmd_populations)

    p = sub.add_parser("train", help="train what a population's zoo is missing")
    p.add_argument("population", help="a spec name (see `icc-bench populations`) or a path to a .toml spec")
    add_common(p)
    p.add_argument("--limit", type=_count, default=None, help="train at most N missing models in this call")
    add_plugin(p, help="a plugin whose measures the spec's [measure_settings] configure (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("measures", help="list every registered measure")
    add_plugin(p)
    p.set_defaults(func=cmd_measures)

    p = sub.add_parser("evaluate", help="train what is missing, compute the measures, print the leaderboard")
    p.add_argument("target", nargs="?", default="quick", metavar="POPULATION | ZOO_DIR", help="a spec name or path, or a zoo folder (default: quick)")
    add_common(p)
    add_scoring(p)
    p.add_argument("--no-train", action="store_true", help="measure only the models already in the zoo")
    add_seed(p, help="seed of the probe sample and of stochastic measures (default 0)")
    p.add_argument("--retry-errors", action="store_true", help="recompute values whose measure raised last time")
    p.add_argument("--allow-factory", action="append", default=[], type=_factory, metavar="MODULE:FUNCTION", help="build the models of an imported zoo whose architecture is factory:MODULE:FUNCTION, by importing MODULE (repeatable; only for code you trust)")
    add_suite_arguments(p, positional="target")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("leaderboard", help="re-score a zoo's leaderboard from its results store (computes no measure)")
    p.add_argument("zoo", metavar="ZOO_DIR", nargs="?", help="a zoo folder (or --suite NAME)")
    add_scoring(p)
    add_seed(p, help="the seed the values were computed with (default 0)")
    add_suite_arguments(p, positional="zoo", runs_dir=True)
    p.set_defaults(func=cmd_leaderboard)

    add_analyze_parser(sub)
    add_import_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised like Ctrl-C so that every open file,
    results store and claim on work is closed on the way out."""


#: Set once SIGTERM arrives: native code that calls back into Python (safetensors reading a
#: checkpoint) may turn the raised :class:`Terminated` into an error of its own (seen: a ValueError
#: from ``load_file``), and the command must still end as terminated, not as a crash.
_terminated = threading.Event()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    import signal

    _terminated.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        _terminated.set()
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with _sigterm_as_interrupt(), warnings_on_one_line():
            check_shared_options(args)
            return args.func(args)
    except _expected_errors() as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except (KeyboardInterrupt, Exception) as e:
        terminated = isinstance(e, Terminated) or _terminated.is_set()
        if not (terminated or isinstance(e, KeyboardInterrupt)):
            raise
        err_console.print("interrupted: every model recorded so far is kept; run the same command again to resume")
        return 143 if terminated else 130
