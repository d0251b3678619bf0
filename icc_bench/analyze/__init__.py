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
share (zoo and model lookup, filling the store, writing files). The command is
:mod:`icc_bench.cli.analyze`; the measures come from the plugins through it
(:func:`icc_bench.selection.select_measures`), and the per-layer and per-neuron values from the
measures' own forms (:attr:`icc_bench.measure.Measure.per_layer`, ``per_neuron``): this package
imports no plugin and names no measure.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Sequence
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
#: The values of k of the paper's Figure 4.
DEFAULT_KS: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 900)


class AnalysisError(ValueError):
    """The zoo cannot be analysed as asked (unknown model, no snapshots, no label hierarchy, ...).

    The message is one sentence naming the zoo, model or option and what to do; the command line
    prints it and exits with status 2.
    """


class Progress(Protocol):
    """What the loops over checkpoints report to (the CLI passes its progress display)."""

    def start(self, total: int, done: int = 0, description: str | None = None) -> None: ...

    def advance(self, info: str = "") -> None: ...


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
    from icc_bench.evaluate import compute_and_store
    from icc_bench.representations_cache import open_context
    from icc_bench.store import result_key, store_for

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
            progress.start(len(todo), description=f"checkpoints ({n_missing} values to compute, {stored} stored)")
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
    from icc_bench.files import atomic_write_bytes

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
    from icc_bench.files import atomic_write_bytes

    header = "".join(f"# {key}: {' '.join(str(value).split())}\n" for key, value in provenance.items())
    path = out_dir / f"{stem}.csv"
    atomic_write_bytes(path, (header + frame.to_csv(index=False, lineterminator="\n")).encode("utf-8"))
    return path


def provenance(zoo: Zoo, command: str) -> dict[str, str]:
    from icc_bench.version import __version__

    spec = zoo.read_spec() or {}
    return {"population": spec.get("name", zoo.root.name), "zoo": str(zoo.root), "icc-bench": __version__, "command": command}


def new_figure(width: float, height: float) -> Figure:
    """A :class:`matplotlib.figure.Figure` on the Agg canvas: no pyplot, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig
