"""Analyses of a trained zoo: the paper's Figures 4-7 and 11, each a figure and the data behind it.

    icc-bench analyze k-sweep ZOO_DIR [--measures c1,c3] [--k 1,3,10,...]   Psi against k     (Figure 4)
    icc-bench analyze layers ZOO_DIR [--depth 1.0]        c1-c4 per layer, mean over models (Figure 5)
    icc-bench analyze dynamics ZOO_DIR --models ID,...    the measures over training epochs  (Figure 6)
    icc-bench analyze neurons ZOO_DIR --model ID          one model's most selective neurons (Figures 7, 11)

Each writes ``<stem>.png``, ``<stem>.svg`` (matplotlib) and ``<stem>.csv`` (the numbers plotted, with
the command that made them in ``#`` lines) into ``<zoo>/analysis/`` or ``--out``.

Nothing is computed twice. Probe representations go through the on-disk cache of
:mod:`icc_bench.representations_cache`, so each checkpoint runs through its network once, whatever
the number of analyses, values of ``k`` or layers. Measure values (the k sweep, the dynamics) go
into the zoo's results store under the same key as ``icc-bench evaluate`` uses: a measure at its
default settings is the leaderboard's row itself, and a snapshot's values are stored under
``<model_id>@<epoch>`` with that snapshot's hash.

The modules: :mod:`~icc_bench.analyze.ksweep`, :mod:`~icc_bench.analyze.layers`,
:mod:`~icc_bench.analyze.dynamics`, :mod:`~icc_bench.analyze.neurons`; this one holds what they
share (zoo and model lookup, measure selection, filling the store, writing files) and the CLI.
"""

from __future__ import annotations

import argparse
import difflib
import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from icc_bench.measure import Measure
    from icc_bench.representations_cache import Checkpoint, RepresentationsCache
    from icc_bench.zoo import Zoo

# Torch and pandas are imported inside the functions that need them: ``icc-bench --help`` builds
# this parser and should stay fast.

#: Where the files go, relative to the zoo folder, unless ``--out`` says otherwise.
ANALYSIS_FOLDER = "analysis"
#: The measures an analysis of the paper's Section 4 looks at by default.
INTRACLASS_MEASURES = "c1,c2,c3,c4"
#: The values of k of the paper's Figure 4.
DEFAULT_KS: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 900)


class AnalysisError(ValueError):
    """The zoo cannot be analysed as asked (unknown model, no snapshots, no label hierarchy, ...).

    The message is one sentence naming the zoo, model or option and what to do; the command line
    prints it and exits with status 2.
    """


class Progress(Protocol):
    """What the loops over checkpoints report to (the CLI passes a rich progress bar)."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, info: str) -> None: ...


# ----------------------------------------------------------------------------- zoo, models, measures


def open_zoo(path: str | Path) -> Zoo:
    """The zoo in ``path``; an :class:`AnalysisError` when it holds no model."""
    from icc_bench.zoo import Zoo

    zoo = Zoo(path)
    if not zoo.model_ids():
        raise AnalysisError(f"{zoo.root}: no trained model here (no models/*.json); pass a zoo folder such as runs/quick")
    return zoo


def find_records(zoo: Zoo, model_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The records of ``model_ids``, in that order; an unknown id is an error with the closest known one."""
    known = zoo.model_ids()
    records = []
    for model_id in model_ids:
        if model_id not in known:
            close = difflib.get_close_matches(model_id, known, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"it holds {len(known)} models, e.g. '{known[0]}'"
            raise AnalysisError(f"{zoo.models_dir}: no model '{model_id}' in this zoo; {hint}")
        records.append(zoo.read_record(model_id))
    return records


def select_measures(zoo: Zoo, patterns: str, plugin_files: Sequence[str] = ()) -> list[Measure]:
    """The registered measures matching ``patterns``, with the zoo's ``[measure_settings]`` applied.

    The same measures, with the same settings (hence settings hashes), as ``icc-bench evaluate``
    uses on this zoo.
    """
    from icc_bench.plugins import load_plugins

    plugins = load_plugins(plugin_files)  # a plugin that fails is skipped with a PluginWarning
    spec = zoo.read_spec() or {}
    overrides = spec.get("measure_settings") or {}
    return [m.with_settings(**overrides[m.name]) if m.name in overrides else m for m in plugins.measures.list(patterns)]


# ----------------------------------------------------------------------------- measure values in the store


def compute_values(
    zoo: Zoo,
    work: Sequence[tuple[Checkpoint, Sequence[Measure]]],
    *,
    cache: RepresentationsCache,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> int:
    """Store every (checkpoint, measure) value of ``work`` that the zoo's results store lacks;
    return how many were computed.

    As ``icc-bench evaluate`` does, with the same key (``checkpoint.key`` as the model id, the
    checkpoint's sha256, the measure name and settings hash) and the same statuses: a measure that
    raises is stored with its error and not retried, one that does not apply is stored as
    such. The difference: representations are read from ``cache`` (and computed into it once),
    so a checkpoint whose values are all stored is not even loaded.
    """
    from icc_bench.evaluate import compute_and_store, store_for
    from icc_bench.store import result_key
    from icc_bench.representations_cache import open_context

    with store_for(zoo) as store:
        done = store.keys()
        todo = []
        stored = 0
        for checkpoint, measures in work:
            unique = list({(m.name, m.settings_hash): m for m in measures}.values())
            missing = [m for m in unique if result_key(checkpoint.key, checkpoint.sha256, m, seed) not in done]
            stored += len(unique) - len(missing)
            if missing:
                todo.append((checkpoint, missing))
        n_missing = sum(len(missing) for _, missing in todo)
        if progress is not None:
            progress.start(len(todo), f"checkpoints ({n_missing} values to compute, {stored} stored)")
        for checkpoint, missing in todo:
            ctx = open_context(zoo, checkpoint, cache=cache, device=device, data_dir=data_dir, seed=seed)
            for m in missing:
                compute_and_store(store, ctx, m, model_id=checkpoint.key, checkpoint_sha256=checkpoint.sha256, seed=seed)
            del ctx  # one model and its representations in memory at a time
            if progress is not None:
                progress.advance(checkpoint.key)
    return n_missing


# ----------------------------------------------------------------------------- files


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``stem.png`` and ``stem.svg`` in ``out_dir``, each written atomically, without timestamps."""
    from icc_bench.zoo import atomic_write_bytes

    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=metadata)
        path = out_dir / f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def save_csv(frame: pd.DataFrame, out_dir: Path, stem: str, provenance: dict[str, str]) -> Path:
    """``stem.csv``: ``# key: value`` provenance lines, then the frame (read it with ``comment="#"``)."""
    from icc_bench.zoo import atomic_write_bytes

    header = "".join(f"# {key}: {' '.join(str(value).split())}\n" for key, value in provenance.items())
    path = out_dir / f"{stem}.csv"
    atomic_write_bytes(path, (header + frame.to_csv(index=False, lineterminator="\n")).encode("utf-8"))
    return path


def provenance(zoo: Zoo, command: str) -> dict[str, str]:
    from icc_bench import __version__

    spec = zoo.read_spec() or {}
    return {"population": spec.get("name", zoo.root.name), "zoo": str(zoo.root), "icc-bench": __version__, "command": command}


def new_figure(width: float, height: float) -> Figure:
    """A :class:`matplotlib.figure.Figure` on the Agg canvas: no pyplot, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# ----------------------------------------------------------------------------- command line


def add_analyze_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``icc-bench analyze {k-sweep,layers,dynamics,neurons}`` on the CLI's subparsers."""
    parser = subparsers.add_parser("analyze", help="the paper's analyses of a trained zoo: figures and their data")
    analyses = parser.add_subparsers(dest="analysis", required=True, metavar="{k-sweep,layers,dynamics,neurons}")

    p = analyses.add_parser("k-sweep", help="granulated Kendall of the measures against their k (paper Figure 4)")
    _add_common(p, measures="c1,c3")
    p.add_argument("--k", default=",".join(map(str, DEFAULT_KS)), help="values of k, comma-separated (each measure's default k is always added)")
    p.add_argument("--target", dest="target_metric", choices=("test_accuracy", "generalization_gap"), default="test_accuracy")
    p.add_argument("--kendall", choices=("tau_a", "tau_b"), default="tau_a")
    p.set_defaults(func=_cmd_k_sweep)

    p = analyses.add_parser("layers", help="c1-c4 per layer, averaged over the models of one depth (paper Figure 5)")
    _add_common(p, measures=INTRACLASS_MEASURES)
    p.add_argument("--depth", type=float, default=1.0, help="the depth factor of the models averaged (default 1.0)")
    p.add_argument("--neurons-per-layer", type=int, default=5, help="k of c1 and c3 within a layer (paper: 5)")
    p.set_defaults(func=_cmd_layers)

    p = analyses.add_parser("dynamics", help="the measures over training epochs, from saved snapshots (paper Figure 6)")
    _add_common(p, measures=INTRACLASS_MEASURES)
    p.add_argument("--models", required=True, help="model ids, comma-separated (see <zoo>/models/*.json)")
    p.set_defaults(func=_cmd_dynamics)

    p = analyses.add_parser("neurons", help="one model's most selective neurons over epochs (paper Figures 7 and 11)")
    _add_common(p, measures=None)
    p.add_argument("--model", required=True, help="a model id (see <zoo>/models/*.json)")
    p.set_defaults(func=_cmd_neurons)


def _add_common(p: argparse.ArgumentParser, *, measures: str | None) -> None:
    p.add_argument("zoo", metavar="ZOO_DIR", help="a trained zoo folder, e.g. runs/quick")
    if measures is not None:
        p.add_argument("--measures", default=measures, metavar="PATTERN", help=f"comma-separated fnmatch patterns (default {measures})")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help="load a measure plugin (repeatable)")
    p.add_argument("--out", default=None, help=f"folder for the files (default: <zoo>/{ANALYSIS_FOLDER})")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--data-dir", default=None, help="local folder with CIFAR in its python layout (default: $ICC_BENCH_DATA)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe sample, as for icc-bench evaluate (default 0)")


class _RichProgress:
    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console,
        )
        self.task = None

    def __enter__(self) -> _RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, total: int, description: str) -> None:
        self.task = self.progress.add_task(description, total=total, info="")

    def advance(self, info: str) -> None:
        self.progress.update(self.task, advance=1, info=info)


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
    from rich.console import Console

    from icc_bench.representations_cache import RepresentationsCache
    from icc_bench.train import resolve_device

    zoo = open_zoo(args.zoo)
    command = "icc-bench " + shlex.join(getattr(args, "argv", None) or ["analyze", args.analysis, args.zoo])
    return _Run(
        zoo=zoo, cache=RepresentationsCache(zoo.root), device=str(resolve_device(args.device)),
        out_dir=Path(args.out) if args.out else zoo.root / ANALYSIS_FOLDER, provenance=provenance(zoo, command),
        console=Console(),
    )


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
    measures = select_measures(run.zoo, args.measures, args.plugin)
    with _RichProgress(run.console) as progress:
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
    measures = select_measures(run.zoo, args.measures, args.plugin)
    with _RichProgress(run.console) as progress:
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
    measures = select_measures(run.zoo, args.measures, args.plugin)
    model_ids = [m.strip() for m in args.models.split(",") if m.strip()]
    with _RichProgress(run.console) as progress:
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
    (c1,) = select_measures(run.zoo, "c1", args.plugin)  # its probe sample, as the c1 values use
    result = neurons.neuron_analysis(
        run.zoo, args.model, c1, cache=run.cache, device=run.device, data_dir=args.data_dir, seed=args.seed,
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
