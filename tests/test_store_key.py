"""One store key: (model, checkpoint sha256, measure, settings hash, evaluation seed), for every reader."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from icc_bench.cli import main
from icc_bench.leaderboard import read_leaderboard
from icc_bench.measure import Measure
from icc_bench.store import ResultKey, ResultStore, result_key
from tiny_population import write_tiny

# A measure whose value says which seed computed it: 100 * seed + the model's test accuracy.
PLUGIN = '''
from pydantic import BaseModel
from icc_bench import Measure, hookimpl


class Settings(BaseModel, frozen=True):
    pass


def seed_mark(ctx, settings):
    """100 x the evaluation seed + the test accuracy."""
    return 100.0 * ctx.seed + float(ctx.record["test_accuracy"])


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="seed_mark", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=seed_mark, settings=Settings()))
'''

OLD_SCHEMA = """CREATE TABLE results (model_id TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL, measure TEXT NOT NULL,
settings_hash TEXT NOT NULL, settings TEXT NOT NULL, status TEXT NOT NULL, value REAL, error TEXT, seconds REAL,
versions TEXT, created TEXT NOT NULL, PRIMARY KEY (model_id, checkpoint_sha256, measure, settings_hash))"""


def _c3() -> Measure:
    from icc_bench.plugins import load_plugins

    return load_plugins(()).measures.get("c3")


def test_a_store_written_before_the_seed_column_is_migrated_on_open(tmp_path):
    c3 = _c3()
    settings = c3.settings.model_dump(mode="json")
    old_seed_1 = hashlib.sha256(f"{c3.settings_hash}:seed=1".encode()).hexdigest()[:16]  # the old result_hash
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("m", "sha", "c3", c3.settings_hash, json.dumps(settings), "ok", 0.5, None, 1.0, "{}", "t"))
        db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("m", "sha", "c3", old_seed_1, json.dumps({**settings, "_seed": 1}), "ok", 0.7, None, 1.0, "{}", "t"))
    with ResultStore(path) as store:
        assert store.keys() == {result_key("m", "sha", c3, 0), result_key("m", "sha", c3, 1)}
        assert store.get(result_key("m", "sha", c3, 0)).value == 0.5
        migrated = store.get(result_key("m", "sha", c3, 1))
        assert migrated.value == 0.7 and migrated.settings == settings  # no "_seed" left in the settings
    with ResultStore(path) as store:  # opening again changes nothing
        assert len(store.keys()) == 2


def test_evaluate_leaderboard_and_analysis_each_read_their_own_seed(tmp_path):
    spec = write_tiny(tmp_path, epochs=2)
    plugin = tmp_path / "seed_mark.py"
    plugin.write_text(PLUGIN)
    runs = tmp_path / "runs"
    zoo = runs / "tiny"
    common = ["--plugin", str(plugin), "--measures", "seed_mark", "--bootstrap", "50"]
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), *common, "--out", str(tmp_path / "s0")]) == 0
    assert main(["evaluate", str(zoo), *common, "--seed", "1", "--out", str(tmp_path / "s1")]) == 0
    with ResultStore(zoo / "results.sqlite") as store:
        seeds = sorted({k.seed for k in store.keys()})
        assert seeds == [0, 1] and all(isinstance(k, ResultKey) for k in store.keys())
    for seed in (0, 1):
        lb = read_leaderboard(tmp_path / f"s{seed}" / "tiny.json")
        assert all(100 * seed <= p.value < 100 * seed + 1 for p in lb.points["seed_mark"])
    # `leaderboard --seed 1` reads seed 1's values, computing nothing.
    assert main(["leaderboard", str(zoo), *common, "--seed", "1", "--out", str(tmp_path / "again")]) == 0
    again = read_leaderboard(tmp_path / "again" / "tiny.json")
    assert all(100 <= p.value < 101 for p in again.points["seed_mark"])

    # The dynamics analysis stores and reads its values under its own seed too.
    from icc_bench.analyze.dynamics import dynamics
    from icc_bench.plugins import load_plugins
    from icc_bench.representations_cache import RepresentationsCache
    from icc_bench.zoo import Zoo

    measure = load_plugins([str(plugin)]).measures.get("seed_mark")
    model_id = Zoo(zoo).model_ids()[0]
    cache = RepresentationsCache(tmp_path / "cache")
    for seed in (0, 1):
        frame = dynamics(Zoo(zoo), [model_id], [measure], cache=cache, seed=seed)
        values = frame[frame["quantity"] == "seed_mark"]["value"]
        assert len(values) and ((100 * seed <= values) & (values < 100 * seed + 1)).all()


def test_a_revised_measure_is_computed_again_and_the_old_values_are_kept(tmp_path):
    """A fix that bumps `revision` changes the key: evaluate computes the new values, the leaderboard
    shows them, and the old revision's rows stay in the store."""
    spec = write_tiny(tmp_path, epochs=2)
    plugin = tmp_path / "seed_mark.py"
    runs, zoo = tmp_path / "runs", tmp_path / "runs" / "tiny"
    common = ["--plugin", str(plugin), "--measures", "seed_mark", "--bootstrap", "0"]
    plugin.write_text(PLUGIN)
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), *common, "--out", str(tmp_path / "r0")]) == 0
    fixed = PLUGIN.replace("return 100.0 * ctx.seed + float", "return 50.0 + 100.0 * ctx.seed + float")
    plugin.write_text(fixed)  # the fix alone, same settings: the stored values are reused
    assert main(["evaluate", str(zoo), *common, "--out", str(tmp_path / "stale")]) == 0
    assert all(p.value < 1 for p in read_leaderboard(tmp_path / "stale" / "tiny.json").points["seed_mark"])
    plugin.write_text(fixed.replace("settings=Settings()))", "settings=Settings(), revision=1))"))
    assert main(["evaluate", str(zoo), *common, "--out", str(tmp_path / "r1")]) == 0
    points = read_leaderboard(tmp_path / "r1" / "tiny.json").points["seed_mark"]
    assert points and all(50 <= p.value < 51 for p in points)
    with ResultStore(zoo / "results.sqlite") as store:
        hashes = {k.settings_hash for k in store.keys() if k.measure == "seed_mark"}
    assert len(hashes) == 2  # both revisions' values are in the store
