"""`icc-bench analyze`: the paper's analyses of a zoo, from cached representations, into the results store.

One tiny hierarchical population (7 models, 8 epochs, a snapshot after epoch 1) is trained once
for the module; every test works on its own copy, so each starts with an empty results store and
an empty representations cache. The analyses run through their own argument parser; the last test
checks that `icc-bench analyze` reaches them through the real command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icc_bench import probe
from icc_bench.analyze import AnalysisError
from icc_bench.cli.analyze import add_analyze_parser
from icc_bench.plugins import load_plugins
from icc_bench.selection import select_measures
from icc_bench.analyze.layers import layer_profile
from icc_bench.cli import main
from icc_bench.config import load_spec
from icc_bench.leaderboard import read_leaderboard
from icc_bench.measure import compute_measure
from icc_bench.population import train_population
from icc_bench.representations_cache import Checkpoint, RepresentationsCache, open_context
from icc_bench.zoo import Zoo
from tiny_population import write_tiny

BASE = "lr0.05_wd0_bs16_sgd_do0_aug0_w1_d1_s0"  # the base configuration of the one-at-a-time grid
OTHER = "lr0.01_wd0_bs16_sgd_do0_aug0_w1_d1_s0"
N_MODELS = 7
EPOCHS = 8  # fewer, and the tiny models all sit at chance: every Kendall would be 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("analyze")
    train_population(load_spec(write_tiny(root, epochs=EPOCHS)), root / "runs")
    return root / "runs" / "tiny"


@pytest.fixture
def zoo(trained, tmp_path) -> Path:
    """A private copy of the trained zoo."""
    return Path(shutil.copytree(trained, tmp_path / "tiny"))


@pytest.fixture
def forward_passes(monkeypatch) -> list[int]:
    """Records the probe size of every compute_representations call, wherever it comes from."""
    calls: list[int] = []
    original = probe.compute_representations

    def counting(model, x, **kwargs):
        calls.append(len(x))
        return original(model, x, **kwargs)

    monkeypatch.setattr(probe, "compute_representations", counting)
    return calls


def analyze(*argv: str) -> int:
    """`icc-bench analyze ARGV --device cpu`, parsed by the analyze parser alone; errors propagate."""
    parser = argparse.ArgumentParser(prog="icc-bench")
    add_analyze_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["analyze", *argv, "--device", "cpu"])
    args.argv = ["analyze", *argv]
    return args.func(args)


def same(a: float, b: float) -> bool:
    """Equal, NaN included (an axis without a group is NaN in both)."""
    return a == b or (np.isnan(a) and np.isnan(b))


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def store_rows(zoo: Path) -> dict[tuple[str, str, str, str], tuple]:
    with sqlite3.connect(zoo / "results.sqlite") as db:
        rows = db.execute("SELECT model_id, checkpoint_sha256, measure, settings_hash, status, value, created FROM results")
        return {r[:4]: r[4:] for r in rows}


def measures(zoo: Path, names: str) -> dict:
    spec = Zoo(zoo).read_spec() or {}
    selected = select_measures(load_plugins().measures, names, spec.get("measure_settings"), spec.get("name", ""))
    return {m.name: m for m in selected}


# ----------------------------------------------------------------------------- k sweep


def test_k_sweep_at_the_default_k_is_the_leaderboard_value(zoo, tmp_path):
    evaluated = Path(shutil.copytree(zoo, tmp_path / "evaluated"))
    assert main(["evaluate", str(evaluated), "--no-train", "--device", "cpu", "--measures", "c1,c3,c4"]) == 0
    board = read_leaderboard(evaluated / "tiny.json")

    # The sweep on a zoo with no stored value computes every k itself, from cached representations.
    assert analyze("k-sweep", str(zoo), "--measures", "c1,c3,c4", "--k", "1") == 0
    sweep = read_csv(zoo / "analysis" / "k_sweep.csv")
    defaults = {"c1": 30, "c3": 30, "c4": 5}  # added to --k: the paper's defaults
    assert sorted(sweep.groupby("measure")["k"].apply(list).items()) == [(m, [1, k]) for m, k in sorted(defaults.items())]
    for name, k in defaults.items():
        (row,) = sweep[(sweep["measure"] == name) & (sweep["k"] == k)].itertuples()
        board_row = board.row(name)
        assert row.default_k and row.settings_hash == board_row.settings_hash
        assert same(row.total, board_row.total) and same(row.cmi, board_row.cmi)
        assert all(same(getattr(row, f"psi_{axis}"), psi) for axis, psi in board_row.per_axis.items())
    assert {name: board.row(name).total for name in defaults} != dict.fromkeys(defaults, 0.0)  # not all ties
    # Value by value, the cached path and the live path of `evaluate` agree to the bit.
    swept, live = store_rows(zoo), store_rows(evaluated)
    assert len(live) == 3 * N_MODELS
    for key, (status, value, _) in live.items():
        assert status == "ok" and swept[key][:2] == (status, value)

    # On the evaluated zoo, the sweep's default-k values are the leaderboard's rows, untouched.
    assert analyze("k-sweep", str(evaluated), "--measures", "c1,c3,c4", "--k", "1") == 0
    after = store_rows(evaluated)
    assert len(after) == 2 * 3 * N_MODELS and all(after[key] == row for key, row in live.items())
    again = read_csv(evaluated / "analysis" / "k_sweep.csv")
    pd.testing.assert_frame_equal(again, sweep)


def test_k_sweep_runs_each_network_once_and_a_later_sweep_none(zoo, forward_passes, monkeypatch):
    loads: list[str] = []
    original_load = Zoo.load_model
    monkeypatch.setattr(Zoo, "load_model", lambda self, model_id, **kw: loads.append(model_id) or original_load(self, model_id, **kw))

    assert analyze("k-sweep", str(zoo), "--measures", "c1,c3", "--k", "1,3") == 0
    assert len(forward_passes) == N_MODELS and len(set(loads)) == N_MODELS == len(loads)
    assert len(store_rows(zoo)) == N_MODELS * 2 * 3  # k = 1, 3 and the default 30
    cached = sorted(p.name for p in (zoo / "representations").iterdir())
    record = json.loads((zoo / "models" / f"{BASE}.json").read_text())
    assert f"{BASE}.{record['checkpoint_sha256'][:16]}.probe-all-seed0.safetensors" in cached and len(cached) == N_MODELS

    # New values of k: every model is loaded for its context, but no network runs.
    assert analyze("k-sweep", str(zoo), "--measures", "c1,c3", "--k", "2") == 0
    assert len(forward_passes) == N_MODELS and len(loads) == 2 * N_MODELS
    assert len(store_rows(zoo)) == N_MODELS * 2 * 4
    assert sorted(read_csv(zoo / "analysis" / "k_sweep.csv")["k"].unique()) == [2, 30]

    # Nothing new: nothing loaded, nothing run.
    assert analyze("k-sweep", str(zoo), "--measures", "c1,c3", "--k", "1,3") == 0
    assert len(forward_passes) == N_MODELS and len(loads) == 2 * N_MODELS


def test_cache_is_keyed_by_checkpoint_and_probe_and_reads_back_bit_for_bit(zoo, forward_passes):
    record = json.loads((zoo / "models" / f"{BASE}.json").read_text())
    final = Checkpoint.final(record)
    cache = RepresentationsCache(zoo)
    ctx = open_context(Zoo(zoo), final, cache=cache)
    computed = ctx.representations
    assert len(forward_passes) == 1 and cache.path(final, None, 0).is_file()

    again = open_context(Zoo(zoo), final, cache=cache).representations
    assert len(forward_passes) == 1
    assert again.layer_names == computed.layer_names
    for a, b, c in zip(again.preactivations, computed.preactivations, again.activations):
        assert a.dtype == b.dtype and a.equal(b) and c.equal(a.clamp(min=0))

    indices = ctx.probe_indices
    retrained = Checkpoint(final.model_id, None, "0" * 64)
    assert cache.path(retrained, None, 0) != cache.path(final, None, 0)
    assert cache.load(retrained, None, 0, indices) is None
    assert cache.load(final, None, 0, indices[:-1]) is None  # another probe sample under the same name
    assert cache.load(final, None, 0, indices) is not None
    snapshot = Checkpoint.snapshots(record)[1]  # [0] is the initialization, kept for every model
    assert snapshot.key == f"{BASE}@1" and cache.path(snapshot, None, 0).name.startswith(f"{BASE}@1.{snapshot.sha256[:16]}.")
    assert cache.path(final, 4, 1).name.endswith(".probe-4-seed1.safetensors")


# ----------------------------------------------------------------------------- layers


def test_per_layer_values_aggregate_back_to_the_measure(zoo):
    """What the per-layer values imply about the pooled measure, checked on every model.

    - With k covering every neuron and a mean over (sub)classes, c1 and c3 are means over all
      neurons, and the per-layer values (k covering each layer) recombine exactly:
      value = sum_l n_l * value_l / sum_l n_l (the mean is linear).
    - With k at most the smallest layer and the default median (c1) or mean (c3), the top k over
      all neurons is at least the top k within any layer for every (sub)class, and median and mean
      are monotone: value >= max_l value_l. Only an inequality: a layer's share of the top k is lost.
    """
    zoo_ = Zoo(zoo)
    cache = RepresentationsCache(zoo)
    base = measures(zoo, "c1,c3")
    everything = 10**6
    linear = [base["c1"].with_settings(subclass_agg="mean"), base["c3"]]
    exact = layer_profile(zoo_, linear, neurons_per_layer=everything, cache=cache).per_model
    small_k = 3  # the narrowest layer has 4 neurons (base width 4)
    bounded = layer_profile(zoo_, [base["c1"], base["c3"]], neurons_per_layer=small_k, cache=cache).per_model
    assert exact["n_neurons"].min() >= 4 and exact["model_id"].nunique() == N_MODELS

    for record in zoo_.records():
        ctx = open_context(zoo_, Checkpoint.final(record), cache=cache)
        for measure in linear:
            rows = exact[(exact["model_id"] == record["model_id"]) & (exact["measure"] == measure.name)]
            recombined = (rows["n_neurons"] * rows["value"]).sum() / rows["n_neurons"].sum()
            assert recombined == pytest.approx(compute_measure(measure.with_settings(k=everything), ctx), rel=1e-12)
        for name in ("c1", "c3"):
            rows = bounded[(bounded["model_id"] == record["model_id"]) & (bounded["measure"] == name)]
            assert compute_measure(base[name].with_settings(k=small_k), ctx) >= rows["value"].max() - 1e-12


def test_layers_writes_the_mean_over_models_of_one_depth(zoo):
    assert analyze("layers", str(zoo)) == 0
    out = zoo / "analysis"
    per_model = read_csv(out / "layers_depth1_per_model.csv")
    mean = read_csv(out / "layers_depth1.csv")
    n_layers = per_model["layer_index"].max()
    assert per_model["model_id"].nunique() == N_MODELS and set(per_model["measure"]) == {"c1", "c2", "c3", "c4"}
    assert len(mean) == 4 * n_layers and (mean["n_models"] == N_MODELS).all()
    for row in mean.itertuples():
        values = per_model[(per_model["measure"] == row.measure) & (per_model["layer_index"] == row.layer_index)]["value"]
        assert row.mean == pytest.approx(values.mean(), rel=1e-12) and row.std == pytest.approx(values.std(ddof=0), rel=1e-9, abs=1e-15)
    assert mean["relative_depth"].max() == 1.0
    assert _is_png(out / "layers_depth1.png") and _is_svg(out / "layers_depth1.svg")

    with pytest.raises(AnalysisError, match="no model has depth factor 1.5; its models have 1: pass one with --depth"):
        analyze("layers", str(zoo), "--depth", "1.5")


# ----------------------------------------------------------------------------- dynamics and neurons


def test_dynamics_measures_each_snapshot_and_the_final_model(zoo):
    assert analyze("dynamics", str(zoo), "--models", f"{BASE},{OTHER}", "--measures", "c1,c3") == 0
    out = zoo / "analysis"
    assert _is_png(out / "dynamics.png") and _is_svg(out / "dynamics.svg")
    frame = read_csv(out / "dynamics.csv")
    rows = store_rows(zoo)
    c3 = measures(zoo, "c3")["c3"]
    for model_id in (BASE, OTHER):
        record = json.loads((zoo / "models" / f"{model_id}.json").read_text())
        mine = frame[frame["model_id"] == model_id]
        c3_rows = mine[mine["quantity"] == "c3"].sort_values("epoch")
        assert list(c3_rows["epoch"]) == [1, EPOCHS] and list(c3_rows["checkpoint"]) == [f"{model_id}@1", model_id]
        # Each point is the stored value of its checkpoint: the final one under the leaderboard's key.
        snapshot_sha = record["snapshots"]["1"]["sha256"]
        assert c3_rows["value"].iloc[0] == rows[(f"{model_id}@1", snapshot_sha, "c3", c3.settings_hash)][1]
        assert c3_rows["value"].iloc[1] == rows[(model_id, record["checkpoint_sha256"], "c3", c3.settings_hash)][1]
        accuracy = mine[mine["quantity"] == "train_accuracy"].sort_values("epoch")
        assert list(accuracy["value"]) == [p["train_accuracy"] for p in record["curve"]]
    assert len(rows) == 2 * 2 * 2  # 2 models x 2 checkpoints x 2 measures

    # Errors: unknown model (with the near miss named), a model trained without snapshots.
    with pytest.raises(AnalysisError, match=f"no model '{BASE[:-1]}1' in this zoo; did you mean '{BASE}'"):
        analyze("dynamics", str(zoo), "--models", BASE[:-1] + "1")
    path = zoo / "models" / f"{OTHER}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "snapshots": {}}))
    with pytest.raises(AnalysisError, match=f"model '{OTHER}' has no checkpoint saved during training"):
        analyze("dynamics", str(zoo), "--models", OTHER)


def test_neurons_ranks_subclasses_and_follows_their_best_neuron(zoo):
    assert analyze("neurons", str(zoo), "--model", BASE) == 0
    assert analyze("k-sweep", str(zoo), "--measures", "c1", "--k", "1") == 0
    out = zoo / "analysis"
    stem = f"neurons_{BASE}"
    for name in (stem, f"{stem}_selectivity"):
        assert _is_png(out / f"{name}.png") and _is_svg(out / f"{name}.svg")
    ranking = read_csv(out / f"{stem}_selectivity.csv")
    assert list(ranking["rank"]) == [1, 2, 3, 4] and ranking["selectivity"].is_monotonic_decreasing
    assert list(ranking["role"].fillna("")) == ["top", "median", "", ""]
    # Figure 11's median is c1 at k = 1, as stored by the sweep.
    record = json.loads((zoo / "models" / f"{BASE}.json").read_text())
    c1_k1 = measures(zoo, "c1")["c1"].with_settings(k=1)
    stored = store_rows(zoo)[(BASE, record["checkpoint_sha256"], "c1", c1_k1.settings_hash)][1]
    assert np.median(ranking["selectivity"]) == pytest.approx(stored, rel=1e-12)

    pre = read_csv(out / f"{stem}.csv")
    assert sorted(pre["epoch"].unique()) == [1, EPOCHS] and set(pre["role"]) == {"top", "median"}
    for _, rows in pre.groupby(["role", "epoch"]):
        sizes = rows["group"].value_counts()
        assert sizes["subclass"] == 12 and sizes["rest of superclass"] == 12  # 2 subclasses of 12 per superclass
        assert rows["sample"].is_unique
    # At the final epoch, the plotted pre-activations give the ranked selectivity by Eq. (1).
    for role in ("top", "median"):
        rows = pre[(pre["role"] == role) & (pre["epoch"] == EPOCHS)]
        own = rows.loc[rows["group"] == "subclass", "preactivation"].to_numpy()
        rest = rows.loc[rows["group"] == "rest of superclass", "preactivation"].to_numpy()
        expected = (own.mean() - rest.mean()) / (own.std() + rest.std() + 1e-7)
        ranked = ranking.loc[ranking["role"] == role, "selectivity"].item()
        assert expected > 0 and ranked == pytest.approx(expected, rel=1e-9)
        assert rows["selectivity"].iloc[0] == ranked  # the same neuron's sel, at the same (final) epoch


# ----------------------------------------------------------------------------- errors and flat labels


def test_flat_labels_and_bad_requests_are_clear_errors(tmp_path):
    flat = write_tiny(tmp_path, epochs=1, name="flat")
    flat.write_text(flat.read_text().replace('name = "synthetic_hierarchy"', 'name = "digits"').replace(
        "options = { superclasses = 2, subclasses = 2, train_per_subclass = 12, test_per_subclass = 8, resolution = 8 }",
        'options = { labels = "fine", resolution = 8, train_per_class = 4, test_per_class = 2 }',
    ))
    train_population(load_spec(flat), tmp_path / "runs", limit=2)
    zoo = tmp_path / "runs" / "flat"
    (model_id, _) = Zoo(zoo).model_ids()

    with pytest.raises(AnalysisError, match=f"model '{model_id}' was trained on dataset 'digits', which has no label hierarchy"):
        analyze("neurons", str(zoo), "--model", model_id)
    with pytest.raises(AnalysisError, match="no model 'nope' in this zoo"):
        analyze("neurons", str(zoo), "--model", "nope")
    with pytest.raises(AnalysisError, match="measure 'inv_sigma_prime' has no setting 'k'"):
        analyze("k-sweep", str(zoo), "--measures", "inv_sigma_prime")
    with pytest.raises(AnalysisError, match="--k '1,0': give positive integers"):
        analyze("k-sweep", str(zoo), "--k", "1,0")
    with pytest.raises(AnalysisError, match="no trained model here"):
        analyze("layers", str(tmp_path))

    # c1 does not apply: the sweep says so instead of failing; layers leave c1 and c2 out.
    assert analyze("k-sweep", str(zoo), "--measures", "c1,c3", "--k", "1") == 0
    sweep = read_csv(zoo / "analysis" / "k_sweep.csv")
    assert sweep.loc[sweep["measure"] == "c1", "not_applicable"].str.contains("needs subclass labels").all()
    assert (sweep.loc[sweep["measure"] == "c3", "n_models"] == 2).all()
    assert analyze("layers", str(zoo)) == 0
    assert set(read_csv(zoo / "analysis" / "layers_depth1.csv")["measure"]) == {"c3", "c4"}
    with pytest.raises(AnalysisError, match="no per-layer form"):
        layer_profile(Zoo(zoo), measures(zoo, "inv_sigma_prime").values(), cache=RepresentationsCache(zoo))


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _is_svg(path: Path) -> bool:
    return b"<svg" in path.read_bytes()[:2000]


def test_icc_bench_analyze_runs_from_the_command_line_and_errors_are_one_line(zoo, capsys):
    assert main(["analyze", "k-sweep", str(zoo), "--measures", "c3", "--k", "1", "--device", "cpu"]) == 0
    assert (zoo / "analysis" / "k_sweep.csv").is_file()
    capsys.readouterr()
    assert main(["analyze", "neurons", str(zoo), "--model", "nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no model 'nope' in this zoo" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- a plugin's own per-layer measure

MEAN_PREACTIVATION = '''
from pydantic import BaseModel, ConfigDict

from icc_bench import Measure, hookimpl


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)


def mean_preactivation(ctx, settings):
    """Mean pre-activation over every neuron of every layer."""
    return float(sum(float(p.mean()) for p in ctx.preactivations) / len(ctx.preactivations))


def per_layer(ctx, settings, neurons_per_layer):
    return [float(p.mean()) for p in ctx.preactivations]


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="mean_preactivation", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=mean_preactivation, settings=Settings(), per_layer=per_layer))
    registry.add(Measure(name="no_layers", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=mean_preactivation, settings=Settings()))
'''


def test_a_plugin_measure_with_a_per_layer_form_takes_part_in_the_layer_analysis(zoo, tmp_path):
    plugin = tmp_path / "mean_preactivation.py"
    plugin.write_text(MEAN_PREACTIVATION)
    assert analyze("layers", str(zoo), "--plugin", str(plugin)) == 0  # default: every measure with a per-layer form
    per_model = read_csv(zoo / "analysis" / "layers_depth1_per_model.csv")
    assert set(per_model["measure"]) == {"c1", "c2", "c3", "c4", "mean_preactivation"}
    # The values are the plugin's, layer by layer: the mean pre-activation of each layer, computed here by hand.
    record = Zoo(zoo).read_record(BASE)
    ctx = open_context(Zoo(zoo), Checkpoint.final(record), cache=RepresentationsCache(zoo), device="cpu", seed=0)
    expected = [float(layer.double().mean()) for layer in ctx.preactivations]
    mine = per_model[(per_model["model_id"] == BASE) & (per_model["measure"] == "mean_preactivation")]
    assert mine["layer_index"].tolist() == list(range(1, len(expected) + 1))
    assert mine["value"].tolist() == pytest.approx(expected, rel=1e-5)

    with pytest.raises(AnalysisError, match="measure 'no_layers' has no per-layer form"):
        analyze("layers", str(zoo), "--plugin", str(plugin), "--measures", "no_layers")
