"""``icc-bench evaluate --suite NAME`` and ``icc-bench leaderboard --suite NAME``.

    icc-bench evaluate --suite NAME      per population: train what is missing, measure, score, write
                                         its leaderboard in its zoo; then the suite leaderboard
    icc-bench leaderboard --suite NAME   re-render the suite leaderboard from the stores (computes nothing)

Per population, the same steps and functions as ``icc-bench evaluate`` and ``icc-bench
leaderboard`` (:func:`icc_bench.population.train_population`, :func:`icc_bench.evaluate.evaluate_zoo`,
:func:`icc_bench.scores.score_zoo`, through :mod:`icc_bench.api`), with the same options; every
measure pattern and setting is checked on every population before anything is trained. The suite
leaderboard (:mod:`icc_bench.suite_leaderboard`) goes to ``--out``, by default
``<runs>/suites/<suite>/<suite>.{md,csv,json,html}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icc_bench.cli.options import add_runs_dir, command_line, loaded_plugins, make_executor, scoring_options
from icc_bench.cli.output import console, measuring_progress, print_measured, print_train_summary, training_progress
from icc_bench.suites import SuiteError

#: Where a suite's leaderboard goes, under the runs folder, unless ``--out`` says otherwise.
SUITES_RUNS_FOLDER = "suites"


def add_suite_arguments(p: argparse.ArgumentParser, *, positional: str, runs_dir: bool = False) -> None:
    """``--suite NAME`` on the ``evaluate`` or ``leaderboard`` parser ``p`` (after its ``positional``
    argument, whose default tells "no population given" from "a population"); ``runs_dir`` also
    adds ``--runs-dir``, which ``leaderboard`` otherwise lacks."""
    p.add_argument("--suite", default=None, metavar="NAME",
                   help="every population of a suite (model_zoo/suites/NAME.toml, or a path), and one leaderboard over them")
    if runs_dir:
        add_runs_dir(p, help="where zoos live, for --suite (default: ./runs or $ICC_BENCH_RUNS)")
    p.set_defaults(_suite_positional=(positional, p.get_default(positional)))


def _check_positional(args: argparse.Namespace) -> None:
    positional, default = args._suite_positional
    if getattr(args, positional) != default:
        raise SuiteError(f"pass either a population or zoo ({getattr(args, positional)}) or --suite {args.suite}, not both")


def _open(args: argparse.Namespace):
    from icc_bench.api import open_suite
    from icc_bench.suites import find_suite

    suite = find_suite(args.suite)
    plugins = loaded_plugins(args)  # reports plugin failures on the console, once
    executor = make_executor(args) if hasattr(args, "executor") else None
    return open_suite(suite, runs_dir=args.runs_dir, plugins=plugins, seed=args.seed, device=getattr(args, "device", None),
                      data_dir=getattr(args, "data_dir", None), executor=executor)


def _write_suite(args: argparse.Namespace, suite, leaderboards) -> None:
    from icc_bench.suite_leaderboard import render_terminal, write_suite_leaderboard
    from icc_bench.suite_scores import score_suite

    slb = score_suite(suite.suite, leaderboards, command=command_line(args))
    console.rule(f"suite {suite.name}")
    render_terminal(slb, console)
    out = Path(args.out) if args.out else Path(args.runs_dir) / SUITES_RUNS_FOLDER / suite.name
    paths = write_suite_leaderboard(slb, out, suite.name)
    console.print("written: " + ", ".join(str(p) for p in paths), highlight=False)


def evaluate_suite(args: argparse.Namespace) -> int:
    """``icc-bench evaluate --suite NAME``."""
    from icc_bench.leaderboard import write_leaderboard
    from icc_bench.scores import score_zoo

    _check_positional(args)
    suite = _open(args)
    measures = {name: zoo.measures(args.measures) for name, zoo in suite.zoos.items()}  # bad input fails before any work
    options = scoring_options(args)
    leaderboards = []
    for i, (name, zoo) in enumerate(suite.zoos.items(), start=1):
        console.rule(f"suite {suite.name}: {name} ({i} of {len(suite.zoos)})")
        if not args.no_train:
            with training_progress() as progress:
                summary = zoo.train(progress=progress)
            print_train_summary(summary)
        if not zoo.zoo.model_ids():
            raise SuiteError(f"{zoo.root}: no trained models of population '{name}' to evaluate; run without --no-train")
        with measuring_progress() as progress:
            stats = zoo.evaluate(measures[name], retry_errors=args.retry_errors, progress=progress)
        print_measured(stats, zoo)
        lb = score_zoo(zoo.zoo, measures[name], **options)
        paths = write_leaderboard(lb, zoo.root, lb.population)  # the population's own leaderboard, where `evaluate` puts it
        console.print(f"{name}: Ψ per measure in {paths[0]}; " + " ".join(lb.verdict[:1]), highlight=False)
        leaderboards.append(lb)
    _write_suite(args, suite, leaderboards)
    return 0


def leaderboard_suite(args: argparse.Namespace) -> int:
    """``icc-bench leaderboard --suite NAME``: the suite leaderboard from the stores, computing nothing."""
    from icc_bench.scores import score_zoo

    if args.suite is None:
        raise SuiteError("icc-bench leaderboard: pass a zoo folder (e.g. runs/quick) or --suite NAME")
    _check_positional(args)
    suite = _open(args)
    options = scoring_options(args)
    leaderboards = []
    for name, zoo in suite.zoos.items():
        measures = zoo.stored_measures(zoo.measures(args.measures))
        if not measures:
            raise SuiteError(
                f"{zoo.root}: population '{name}' has no stored values of the selected measures; "
                f"run `icc-bench evaluate --suite {args.suite}` first"
            )
        leaderboards.append(score_zoo(zoo.zoo, measures, **options))
    _write_suite(args, suite, leaderboards)
    return 0
