"""``icc-bench populations``, ``train``, ``measures``, ``evaluate`` and ``leaderboard`` (one zoo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from icc_bench.cli.options import (
    loaded_plugins,
    make_executor,
    scoring_options,
    selected_measures,
)
from icc_bench.cli.output import console, err_console, measuring_progress, print_measured, print_train_summary, training_progress
from icc_bench.errors import UserError


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
def cmd_train(args: argparse.Namespace) -> int:
    from icc_bench.population import find_spec, train_population

    spec = find_spec(args.population)
    selected_measures(args, None, spec.measure_settings, spec.name)  # a bad [measure_settings] fails now, not after training
    executor = make_executor(args)
    with training_progress() as progress:
        summary = train_population(
            spec, args.runs_dir, data_dir=args.data_dir, device=args.device, limit=args.limit,
            executor=executor, progress=progress,
        )
    print_train_summary(summary)
    stop_if_refused(dict(summary.refused), summary.total, "the others are trained")
    return 0


def stop_if_refused(refused: dict[str, str], total: int, others: str) -> None:
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
def cmd_measures(args: argparse.Namespace) -> int:
    from icc_bench.plugins import measures_table

    console.print(measures_table(loaded_plugins(args).measures))
    return 0


# -- evaluate ------------------------------------------------------------------------------------
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


def _measures_of(args: argparse.Namespace, spec) -> list:
    """``--measures`` among the loaded plugins, with the spec's ``[measure_settings]``."""
    if spec is None:
        return selected_measures(args, args.measures, None, "")
    return selected_measures(args, args.measures, spec.measure_settings, spec.name)


def write_and_show(lb, out_dir: Path, stem: str) -> list[Path]:
    """Print a leaderboard and write its files; the paths written."""
    from icc_bench.leaderboard import render_terminal, write_leaderboard

    render_terminal(lb, console)
    paths = write_leaderboard(lb, out_dir, stem)
    console.print("written: " + ", ".join(str(p) for p in paths), highlight=False)
    return paths


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.suite is not None:
        from icc_bench.cli.suite import evaluate_suite

        return evaluate_suite(args)
    from icc_bench.evaluate import evaluate_zoo
    from icc_bench.population import train_population
    from icc_bench.scores import score_zoo
    from icc_bench.zoo import Zoo

    spec, zoo = _resolve_target(args.target)
    measures = _measures_of(args, spec)  # bad patterns fail before any work
    executor = make_executor(args)
    refused: dict[str, str] = {}
    if zoo is None:
        zoo = Zoo(Path(args.runs_dir) / spec.name)
        if not args.no_train:
            with training_progress() as progress:
                summary = train_population(
                    spec, args.runs_dir, data_dir=args.data_dir, device=args.device, executor=executor, progress=progress
                )
            print_train_summary(summary)
            refused.update(summary.refused)
    if not zoo.model_ids():
        raise UserError(f"{zoo.root}: no trained models to evaluate; run without --no-train, or `icc-bench train {spec.name}`")
    with measuring_progress() as progress:
        stats = evaluate_zoo(
            zoo, measures, device=args.device, data_dir=args.data_dir, seed=args.seed,
            retry_errors=args.retry_errors, executor=executor, progress=progress, allow_factories=args.allow_factory,
        )
    print_measured(stats, zoo)
    refused.update(stats.refused)
    # No leaderboard from a zoo with refused models: it would rank a population that is not the one trained.
    stop_if_refused(refused, len(zoo.model_ids()), "the values of the others are computed and stored")
    lb = score_zoo(zoo, measures, **scoring_options(args))
    write_and_show(lb, Path(args.out) if args.out else zoo.root, lb.population)
    return 0


# -- leaderboard ---------------------------------------------------------------------------------
def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.suite is not None or args.zoo is None:
        from icc_bench.cli.suite import leaderboard_suite

        return leaderboard_suite(args)
    from icc_bench.scores import score_zoo
    from icc_bench.store import store_for

    path = Path(args.zoo)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise UserError(f"{path}: {what}; pass the folder a population was trained into (e.g. runs/quick)")
    spec, zoo = _resolve_target(args.zoo)
    measures = _measures_of(args, spec)
    with store_for(zoo) as store:
        measures = store.stored(measures, args.seed)
    if not measures:
        raise UserError(f"{zoo.root}: the results store holds no values of the selected measures; run `icc-bench evaluate {zoo.root}` first")
    lb = score_zoo(zoo, measures, **scoring_options(args))
    write_and_show(lb, Path(args.out) if args.out else zoo.root, lb.population)
    return 0
