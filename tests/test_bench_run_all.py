"""bench/run_all.py --only: rerun some benchmarks, carry the others over from the existing file."""

from __future__ import annotations

import importlib.util
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
