"""``icc-bench analyze``: the paper's analyses of a trained zoo (:mod:`icc_bench.analyze`) as commands.

The defaults of ``--measures`` are the paper's: Figure 4 sweeps c1 and c3, Figure 6 follows c1-c4;
the layer analysis takes every measure with a per-layer form and the neurons analysis the first
with a per-neuron form (:attr:`icc_bench.measure.Measure.per_layer`, ``per_neuron``), so a
plugin's own measure takes part by registering those forms.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.analyze import ANALYSIS_FOLDER, DEFAULT_KS, AnalysisError, open_zoo, provenance, save_csv, save_figure
from icc_bench.cli.options import add_data_dir, add_device, add_measures, add_plugin, add_seed, selected_measures
from icc_bench.cli.output import Progress, console

if TYPE_CHECKING:
    from icc_bench.representations_cache import RepresentationsCache
    from icc_bench.zoo import Zoo

#: The measures of the paper's Figure 4 (Psi against k).
K_SWEEP_MEASURES = "c1,c3"
#: The measures the paper's Figure 6 follows over training.
DYNAMICS_MEASURES = "c1,c2,c3,c4"


def add_analyze_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``icc-bench analyze {k-sweep,layers,dynamics,neurons}`` on the CLI's subparsers."""
    parser = subparsers.add_parser("analyze", help="the paper's analyses of a trained zoo: figures and their data")
    analyses = parser.add_subparsers(dest="analysis", required=True, metavar="{k-sweep,layers,dynamics,neurons}")

    p = analyses.add_parser("k-sweep", help="granulated Kendall of the measures against their k (paper Figure 4)")
    _add_common(p, measures=K_SWEEP_MEASURES)
    p.add_argument("--k", default=",".join(map(str, DEFAULT_KS)), help="values of k, comma-separated (each measure's default k is always added)")
    p.add_argument("--target", dest="target_metric", choices=("test_accuracy", "generalization_gap"), default="test_accuracy")
    p.add_argument("--kendall", choices=("tau_a", "tau_b"), default="tau_a")
    p.set_defaults(func=_cmd_k_sweep)

    p = analyses.add_parser("layers", help="the measures per layer, averaged over the models of one depth (paper Figure 5)")
    _add_common(p, measures="", measures_help="comma-separated fnmatch patterns (default: every measure with a per-layer form, c1-c4 with the built-in plugins)")
    p.add_argument("--depth", type=float, default=1.0, help="the depth factor of the models averaged (default 1.0)")
    p.add_argument("--neurons-per-layer", type=int, default=5, help="neurons kept per layer by the measures that keep their top neurons, c1 and c3 (paper: 5)")
    p.set_defaults(func=_cmd_layers)

    p = analyses.add_parser("dynamics", help="the measures over training epochs, from saved snapshots (paper Figure 6)")
    _add_common(p, measures=DYNAMICS_MEASURES)
    p.add_argument("--models", required=True, help="model ids, comma-separated (see <zoo>/models/*.json)")
    p.set_defaults(func=_cmd_dynamics)

    p = analyses.add_parser("neurons", help="one model's most selective neurons over epochs (paper Figures 7 and 11)")
    _add_common(p, measures=None)
    p.add_argument("--model", required=True, help="a model id (see <zoo>/models/*.json)")
    p.set_defaults(func=_cmd_neurons)


def _add_common(p: argparse.ArgumentParser, *, measures: str | None, measures_help: str | None = None) -> None:
    p.add_argument("zoo", metavar="ZOO_DIR", help="a trained zoo folder, e.g. runs/quick")
    if measures is not None:
        add_measures(p, default=measures or None, help=measures_help or f"comma-separated fnmatch patterns (default {measures})")
    add_plugin(p, help="load a measure plugin (repeatable)")
    p.add_argument("--out", default=None, help=f"folder for the files (default: <zoo>/{ANALYSIS_FOLDER})")
    add_device(p, help="auto (CUDA when present), cpu, cuda, ...")
    add_data_dir(p)
    add_seed(p, help="seed of the probe sample, as for icc-bench evaluate (default 0)")


@dataclass
class _Run:
    """What every analysis command shares: the zoo, the cache, the device and where files go."""

    zoo: Zoo
    cache: RepresentationsCache
    device: str
    out_dir: Path
    provenance: dict[str, str]
    console: Any


def _run(args: argparse.Namespace) -> _Run:
    from icc_bench.device import resolve_device
    from icc_bench.representations_cache import RepresentationsCache

    zoo = open_zoo(args.zoo)
    command = "icc-bench " + shlex.join(getattr(args, "argv", None) or ["analyze", args.analysis, args.zoo])
    return _Run(
        zoo=zoo, cache=RepresentationsCache(zoo.root), device=str(resolve_device(args.device)),
        out_dir=Path(args.out) if args.out else zoo.root / ANALYSIS_FOLDER, provenance=provenance(zoo, command),
        console=console,
    )


def _measures(args: argparse.Namespace, zoo: Zoo, patterns: str | None) -> list:
    """The measures ``patterns`` select, with the zoo's ``[measure_settings]``: those ``evaluate`` uses."""
    spec = zoo.read_spec() or {}
    return selected_measures(args, patterns, spec.get("measure_settings") or {}, spec.get("name", zoo.root.name))


def _report(run: _Run, paths: list[Path]) -> None:
    size = run.cache.size_bytes() / 2**20
    run.console.print("written: " + ", ".join(str(p) for p in paths), highlight=False, soft_wrap=True)
    run.console.print(f"representations cache: {run.cache.folder} ({size:.1f} MiB; safe to delete)", highlight=False, soft_wrap=True)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise AnalysisError(f"--k {text!r}: give positive integers separated by commas, e.g. 1,3,10,30") from None
    if not ks or min(ks) < 1:
        raise AnalysisError(f"--k {text!r}: give positive integers separated by commas, e.g. 1,3,10,30")
    return ks


def _cmd_k_sweep(args: argparse.Namespace) -> int:
    from icc_bench.analyze import ksweep

    ks = _parse_ks(args.k)
    run = _run(args)
    measures = _measures(args, run.zoo, args.measures)
    with Progress(run.console) as progress:
        frame = ksweep.k_sweep(
            run.zoo, measures, ks, target=args.target_metric, kendall=args.kendall, cache=run.cache,
            device=run.device, data_dir=args.data_dir, seed=args.seed, progress=progress,
        )
    ksweep.print_summary(frame, run.console)
    fig = ksweep.k_sweep_figure(frame, title=run.provenance["population"], target=args.target_metric, kendall=args.kendall)
    _report(run, save_figure(fig, run.out_dir, "k_sweep") + [save_csv(frame, run.out_dir, "k_sweep", run.provenance)])
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from icc_bench.analyze import layers

    run = _run(args)
    measures = _measures(args, run.zoo, args.measures)
    if args.measures is None:
        measures = [m for m in measures if m.per_layer is not None]
    with Progress(run.console) as progress:
        profile = layers.layer_profile(
            run.zoo, measures, args.depth, neurons_per_layer=args.neurons_per_layer, cache=run.cache,
            device=run.device, data_dir=args.data_dir, seed=args.seed, progress=progress,
        )
    for name, reason in profile.not_applicable.items():
        run.console.print(f"{name}: not applicable ({reason})", highlight=False, soft_wrap=True)
    for model_id, name, message in profile.errors:
        run.console.print(f"[yellow]{name} left out on {model_id}:[/] {message}", highlight=False, soft_wrap=True)
    stem = f"layers_depth{args.depth:g}"
    fig = layers.layers_figure(profile, title=run.provenance["population"])
    paths = save_figure(fig, run.out_dir, stem) + [
        save_csv(profile.mean, run.out_dir, stem, run.provenance),
        save_csv(profile.per_model, run.out_dir, f"{stem}_per_model", run.provenance),
    ]
    _report(run, paths)
    return 0


def _cmd_dynamics(args: argparse.Namespace) -> int:
    from icc_bench.analyze import dynamics

    run = _run(args)
    measures = _measures(args, run.zoo, args.measures)
    model_ids = [m.strip() for m in args.models.split(",") if m.strip()]
    with Progress(run.console) as progress:
        frame = dynamics.dynamics(
            run.zoo, model_ids, measures, cache=run.cache, device=run.device, data_dir=args.data_dir,
            seed=args.seed, progress=progress,
        )
    fig = dynamics.dynamics_figure(frame, title=run.provenance["population"])
    _report(run, save_figure(fig, run.out_dir, "dynamics") + [save_csv(frame, run.out_dir, "dynamics", run.provenance)])
    return 0


def _cmd_neurons(args: argparse.Namespace) -> int:
    from icc_bench.analyze import neurons

    run = _run(args)
    with_form = [m for m in _measures(args, run.zoo, None) if m.per_neuron is not None]
    if not with_form:
        raise AnalysisError("no registered measure has a per-neuron form (Measure.per_neuron; icc_intraclass gives c1 one); add the --plugin that registers one")
    result = neurons.neuron_analysis(
        run.zoo, args.model, with_form[0], cache=run.cache, device=run.device, data_dir=args.data_dir, seed=args.seed,
    )
    neurons.print_summary(result, run.console)
    stem = f"neurons_{args.model}"
    paths = (
        save_figure(neurons.preactivations_figure(result), run.out_dir, stem)
        + [save_csv(result.preactivations, run.out_dir, stem, run.provenance)]
        + save_figure(neurons.selectivity_figure(result), run.out_dir, f"{stem}_selectivity")
        + [save_csv(result.ranking, run.out_dir, f"{stem}_selectivity", run.provenance)]
    )
    _report(run, paths)
    return 0
