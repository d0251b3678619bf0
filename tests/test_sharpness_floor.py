"""leaderboards/sharpness_floor.py: how many models each sharpness measure leaves at its cap, per eps."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from icc_bench.config import load_spec
from icc_bench.population import train_population
from two_population import TWO

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
spec = importlib.util.spec_from_file_location("sharpness_floor", LEADERBOARDS / "sharpness_floor.py")
sharpness_floor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sharpness_floor)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("floor")
    path = tmp / "two.toml"  # the two tiny models, trained until they fit: a floor can only cost what was learnt
    path.write_text(TWO.replace("epochs = 1\nmilestones = [1]", "epochs = 40\nmilestones = [40]"))
    summary = train_population(load_spec(path), tmp / "runs", device="cpu")
    assert all(r["train_accuracy"] >= 0.9 for r in summary.records)  # far above chance (0.5)
    return path, tmp / "runs"


def test_an_eps_that_wrecks_the_network_puts_every_model_at_the_cap_and_none_puts_none(two, tmp_path):
    spec_path, runs = two
    out = tmp_path / "floor.md"
    argv = [str(spec_path), "--runs-dir", str(runs), "--eps", "5", "0", "--out", str(out)]
    assert sharpness_floor.main(argv) == 0
    text = out.read_text()
    assert f"`python leaderboards/sharpness_floor.py {' '.join(argv)}`" in text  # the command that regenerates it
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| (.*) \|$", text, re.M)}
    assert sorted(rows) == sorted(sharpness_floor.MEASURES)
    for name, cells in rows.items():
        at_five, at_zero, choice = (c.strip() for c in cells.split(" | "))
        assert at_five.startswith("2/2 (100%)"), (name, at_five)  # a floor of 5 x the weights' scale, alone
        assert at_zero.startswith("0/2 (0%), drop 0.000"), (name, at_zero)  # no perturbation at scale 0
        assert choice == "0"  # the largest eps <= 1e-3 with at most 5% at the cap


def test_the_count_is_the_measures_own_cap(two):
    """A model counted at the cap is one whose stored value is the cap: same subset, draws, rule."""
    import icc_bench

    spec_path, runs = two
    counts = sharpness_floor.floor_counts(str(spec_path), [5.0], runs_dir=str(runs), seed=0)
    zoo = icc_bench.open_zoo(str(spec_path), runs_dir=runs)
    values = zoo.compute(zoo.measure("inv_alpha_dprime", eps=5.0))
    assert counts[("inv_alpha_dprime", 5.0)][0] == int((values > 1e11).sum()) == 2


def test_a_rerun_computes_nothing_it_has_computed(two, tmp_path, monkeypatch):
    """Every check is kept in the zoo (keyed by checkpoint, settings with that eps, seed): a second
    run computes none, and a new eps computes only its own."""
    import icc_sharpness.perturb as perturb

    spec_path, runs = two
    sharpness_floor.floor_counts(str(spec_path), [5.0], runs_dir=str(runs), seed=0)  # maybe cached by another test
    calls = []
    real = perturb.floor_drop
    monkeypatch.setattr(perturb, "floor_drop", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = sharpness_floor.floor_counts(str(spec_path), [5.0], runs_dir=str(runs), seed=0)
    assert calls == []
    both = sharpness_floor.floor_counts(str(spec_path), [5.0, 0.25], runs_dir=str(runs), seed=0)
    assert len(calls) == 2 * len(sharpness_floor.MEASURES)  # two models, the new eps only
    assert {k: v for k, v in both.items() if k[1] == 5.0} == first
    assert (runs / "two" / sharpness_floor.CACHE_NAME).exists()
