"""bench/run_all.py --only: rerun some benchmarks, carry the others over from the existing file."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
run_all = importlib.util.module_from_spec(spec)
sys.modules["run_all"] = run_all  # dataclasses look their module up while the class is built
spec.loader.exec_module(run_all)

INFO = {"CPU": "test", "commit": "abc1234"}
LOAD = (0.5, 0.5, 0.5)


def _run(script: str, ratio: str, out: str) -> run_all.Run:
    bench = run_all.Benchmark(script, ratios=lambda stdout, r=ratio: [r])
    return run_all.Run(bench, f"python bench/{script}", 0, out, "", 1.0, LOAD, LOAD)


def test_only_reruns_what_it_names_and_carries_the_rest_marked_with_their_run():
    first = run_all.render(
        [_run("a_bench.py", "a: 2.0x", "a's first output"), _run("b_bench.py", "b: 3.0x", "b's first output")],
        INFO, datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), LOAD,
    )
    carried = run_all.previous_results(first)
    assert carried[0] == "2026-01-02 03:04 UTC, commit abc1234"
    assert set(carried[1]) == {"a_bench.py", "b_bench.py"}

    second = run_all.render(
        [_run("b_bench.py", "b: 5.0x", "b's second output")], {**INFO, "commit": "def5678"},
        datetime(2026, 2, 3, 4, 5, tzinfo=timezone.utc), LOAD, carried,
    )
    assert "a's first output" in second and "b's second output" in second and "b's first output" not in second
    assert "| a: 2.0x |" in second and "| b: 5.0x |" in second and "b: 3.0x" not in second
    a_section = second.split("## a_bench.py")[1].split("## b_bench.py")[0]
    assert "- carried over from the run of 2026-01-02 03:04 UTC, commit abc1234" in a_section
    assert "carried over" not in second.split("## b_bench.py")[1]
    assert second.index("## a_bench.py") < second.index("## b_bench.py")  # one order, whatever was rerun
    # A file rerun without --only carries nothing over.
    assert "carried over" not in run_all.render([_run("b_bench.py", "b: 5.0x", "x")], INFO, datetime.now(timezone.utc), LOAD)


def test_population_cost_adds_up_the_recorded_seconds_of_a_zoo(tmp_path, capsys):
    """bench/population_cost.py times nothing: it sums what the records and the store hold."""
    from icc_bench.config import load_spec
    from icc_bench.population import train_population
    from icc_bench.store import ResultStore
    from icc_bench.zoo import Zoo
    from two_population import write_two

    cost_spec = importlib.util.spec_from_file_location("population_cost", BENCH / "population_cost.py")
    population_cost = importlib.util.module_from_spec(cost_spec)
    cost_spec.loader.exec_module(population_cost)

    spec_path = write_two(tmp_path)
    train_population(load_spec(spec_path), tmp_path / "runs", device="cpu")
    zoo = Zoo(tmp_path / "runs" / "two")
    records = list(zoo.records())
    import icc_bench

    current = icc_bench.open_zoo(str(spec_path), runs_dir=tmp_path / "runs")
    with ResultStore(zoo.root / "results.sqlite") as store:
        for i, (measure, seconds) in enumerate([("c1", 2.0), ("c3", 3.0), ("inv_sigma_prime", 40.0), ("pgdl_mixup", 5.0)]):
            store.put(model_id=records[i % 2]["model_id"], checkpoint_sha256="x", measure=measure,
                      settings_hash=current.measure(measure).settings_hash, seed=0, settings={}, status="ok", value=1.0,
                      seconds=seconds)
        store.put(model_id=records[0]["model_id"], checkpoint_sha256="x", measure="c2", settings_hash=current.measure("c2").settings_hash,
                  seed=0, settings={}, status="error", error="boom", seconds=100.0)  # an error's seconds are not a value's
        store.put(model_id=records[0]["model_id"], checkpoint_sha256="x", measure="c1", settings_hash="superseded", seed=0,
                  settings={}, status="ok", value=1.0, seconds=70.0)  # other settings than the population's now
        store.put(model_id=records[0]["model_id"], checkpoint_sha256="x", measure="c1", settings_hash=current.measure("c1").settings_hash,
                  seed=1, settings={}, status="ok", value=1.0, seconds=80.0)  # another evaluation seed
    population_cost.main([str(spec_path), "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    total = sum(r["train_seconds"] for r in records)
    assert "population 'two': 2 of its 2 models trained, on cpu" in out
    assert f"training: {total:,.0f} model-seconds ({total / 3600:.2f} h)" in out
    assert "measuring: 50 value-seconds (PGDL winners 5 s, intraclass clustering 5 s, sharpness 40 s)" in out
    median = statistics.median(r["train_seconds"] for r in records)
    assert run_all._population_cost(out) == [f"two (2/2 models): {total / 3600:.2f} h of training, median {median:.1f} s per model"]


def test_a_section_carried_twice_keeps_the_run_it_comes_from():
    """--only twice: a benchmark rerun in neither keeps the first run's date and commit, in one line
    (it once took the date of the run in between, one more line each time)."""
    first = run_all.render([_run("a_bench.py", "a: 2.0x", "a out"), _run("b_bench.py", "b: 3.0x", "b out")],
                           INFO, datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), LOAD)
    second = run_all.render([_run("b_bench.py", "b: 5.0x", "b out 2")], {**INFO, "commit": "def5678"},
                            datetime(2026, 2, 3, 4, 5, tzinfo=timezone.utc), LOAD, run_all.previous_results(first))
    third = run_all.render([_run("b_bench.py", "b: 6.0x", "b out 3")], {**INFO, "commit": "0123456"},
                           datetime(2026, 3, 4, 5, 6, tzinfo=timezone.utc), LOAD, run_all.previous_results(second))
    a_section = third.split("## a_bench.py")[1].split("## b_bench.py")[0]
    assert a_section.count("carried over from the run of") == 1
    assert "- carried over from the run of 2026-01-02 03:04 UTC, commit abc1234" in a_section
    assert "a_bench.py from the run of 2026-01-02 03:04 UTC, commit abc1234" in third
    assert "a out" in a_section
