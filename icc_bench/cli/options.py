"""The options several commands share, each defined once, and what the commands do with them.

``--runs-dir``, ``--data-dir``, ``--device``, ``--plugin``, ``--measures``, ``--seed``, the scoring
options and the executor options are added by the functions below and nowhere else; the plugins a
command names are loaded once per command (:func:`loaded_plugins`) and its measures selected by
:func:`icc_bench.selection.select_measures`, the one selection that ``icc_bench.api`` uses too.
"""

from __future__ import annotations

import argparse
import os
import shlex

from icc_bench.errors import UserError

DEFAULT_RUNS = "runs"
RUNS_ENV = "ICC_BENCH_RUNS"


# -- the options ---------------------------------------------------------------------------------
def add_runs_dir(p: argparse.ArgumentParser, help: str = "where zoos live (default: ./runs or $ICC_BENCH_RUNS)") -> None:
    p.add_argument("--runs-dir", default=os.environ.get(RUNS_ENV, DEFAULT_RUNS), help=help)


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="local folder with CIFAR in its python layout (default: $ICC_BENCH_DATA)")


def add_device(p: argparse.ArgumentParser, help: str = "auto (CUDA when present), cpu, cuda, cuda:1, ...") -> None:
    p.add_argument("--device", default="auto", help=help)


def add_plugin(p: argparse.ArgumentParser, help: str = "load a measure plugin from a .py file or a module (repeatable)") -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help=help)


def add_measures(p: argparse.ArgumentParser, default: str | None = None, help: str | None = None) -> None:
    p.add_argument("--measures", default=default, metavar="PATTERN", help=help or (
        "measures to use, comma-separated fnmatch patterns (e.g. 'c*,inv_sigma*')"))


def add_seed(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=help)


def add_common(p: argparse.ArgumentParser) -> None:
    """Where zoos live, where the data is, the device, and where the work runs: train and evaluate."""
    add_runs_dir(p)
    add_data_dir(p)
    add_device(p)
    add_executor_arguments(p)


def add_scoring(p: argparse.ArgumentParser) -> None:
    """The options of a leaderboard: evaluate and leaderboard."""
    add_plugin(p)
    add_measures(p)
    p.add_argument("--target", dest="target_metric", choices=("test_accuracy", "generalization_gap"), default="test_accuracy", help="what the measures should predict (default: test_accuracy)")
    p.add_argument("--kendall", choices=("tau_a", "tau_b"), default="tau_a", help="Kendall variant (default: tau_a)")
    p.add_argument("--out", default=None, help="folder for the leaderboard files (default: the zoo folder)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap draws for the intervals; 0 switches them off (default 1000)")
    p.add_argument("--ci", type=float, default=0.9, metavar="LEVEL", help="coverage of the intervals and level of 'not distinguishable' (default 0.9)")
    p.add_argument("--score", action="append", default=[], choices=("sign-error",), help="extra leaderboard columns: sign-error (robust and mean; always in the JSON)")


def _batch_models(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give auto, or the most models to train together (1: one at a time)")
    return n


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--batch-models``, ``--ray-address``, ``--gpus-per-model``, ``--cpus-per-model``."""
    group = parser.add_argument_group("where models are trained and measured")
    group.add_argument("--executor", choices=("local", "ray"), default="local", help="local: in this process (default); ray: one task per model on a Ray cluster")
    group.add_argument("--batch-models", type=_batch_models, default="auto", metavar="auto|N", help="train models that share an architecture and batch size together, at most N at once (default auto: up to 16 where it measured faster: narrow networks on the CPU, all on CUDA; local executor; 1: one at a time)")
    group.add_argument("--ray-address", default=None, metavar="ADDRESS", help="a running Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: $RAY_ADDRESS, else a cluster started on this machine)")
    group.add_argument("--gpus-per-model", type=float, default=None, metavar="F", help="GPUs each model reserves; 0.25 puts four models on each GPU (default: 1 when the cluster has GPUs and --device is not cpu, else 0)")
    group.add_argument("--cpus-per-model", type=int, default=None, metavar="N", help="cores each model reserves, and its torch threads (default 1)")


# -- what the commands do with them --------------------------------------------------------------
def make_executor(args: argparse.Namespace):
    """The executor the command line asks for; Ray options without ``--executor ray`` are an error."""
    from icc_bench.executors import ExecutorError, LocalExecutor, RayExecutor

    ray_options = {"--ray-address": args.ray_address, "--gpus-per-model": args.gpus_per_model, "--cpus-per-model": args.cpus_per_model}
    if args.executor == "local":
        given = [flag for flag, value in ray_options.items() if value is not None]
        if given:
            raise ExecutorError(f"{given[0]} applies to --executor ray only; add --executor ray, or drop {given[0]}")
        return LocalExecutor(batch_models=args.batch_models)
    if args.batch_models not in ("auto", 1):
        raise ExecutorError(
            f"--batch-models {args.batch_models} applies to --executor local; Ray trains one model per task "
            "(drop --batch-models, or use --executor local)"
        )
    return RayExecutor(address=args.ray_address, gpus_per_model=args.gpus_per_model, cpus_per_model=args.cpus_per_model or 1)


def loaded_plugins(args: argparse.Namespace):
    """The plugins, loaded once per command: a ``--plugin`` the user named that fails stops the
    command (``PluginError``); an installed plugin that fails is skipped with a warning."""
    import warnings

    from icc_bench.cli.output import warn
    from icc_bench.plugins import PluginWarning, check_requested, load_plugins

    if getattr(args, "_plugins", None) is not None:
        return args._plugins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # reported once, below
        plugins = load_plugins(getattr(args, "plugin", None) or ())
    check_requested(plugins)
    for name, message in plugins.failures:
        warn(f"plugin {name!r} skipped: {message}")
    args._plugins = plugins
    return plugins


def selected_measures(args: argparse.Namespace, patterns: str | None, measure_settings: dict | None, population: str) -> list:
    """The measures ``patterns`` select among the loaded plugins', with the population's settings
    (:func:`icc_bench.selection.select_measures`)."""
    from icc_bench.selection import select_measures

    return select_measures(loaded_plugins(args).measures, patterns, measure_settings, population)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, for the provenance of what it writes."""
    return "icc-bench " + shlex.join(args.argv)


def scoring_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``score_zoo`` that the scoring options set (bad values are one sentence)."""
    from icc_bench.uncertainty import BootstrapSettings

    try:
        bootstrap = BootstrapSettings(draws=args.bootstrap, level=args.ci, seed=args.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    return {"target": args.target_metric, "kendall": args.kendall, "command": command_line(args), "seed": args.seed,
            "bootstrap": bootstrap, "show_sign_error": "sign-error" in args.score}


def check_shared_options(args: argparse.Namespace) -> None:
    """The options several commands share, checked once for all of them, before any command starts."""
    from icc_bench.device import check_device

    if hasattr(args, "device"):
        check_device(args.device, on_ray=getattr(args, "executor", "local") == "ray")
    measures = getattr(args, "measures", None)
    if measures is not None and not any(p.strip() for p in measures.split(",")):
        raise UserError(f"--measures {measures!r} names no measure; pass names or patterns, e.g. 'c1,c3' or 'inv_*' (see `icc-bench measures`)")
    if getattr(args, "plugin", None):
        loaded_plugins(args)  # a --plugin that fails stops every command the same way
