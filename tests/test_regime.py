"""icc_bench.regime: the two criteria of SPEC §4 against numbers computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from icc_bench.regime import population_regime


def _records(train, test, n_test=None, key="predictions"):
    records = []
    for a, b in zip(train, test):
        record = {"train_accuracy": a, "test_accuracy": b}
        if n_test is not None:
            record.update({"predictions": {"splits": {"test": n_test, "heldout": 7}}} if key == "predictions" else {"n_test": n_test})
        records.append(record)
    return records


def test_a_population_outside_the_regime_on_both_counts():
    # Hand computation: 3 of 4 train accuracies are >= 0.99 -> 0.75. Test accuracies 0.6, 0.7, 0.8,
    # 0.9: linear quartiles at positions 0.75 and 2.25 -> Q1 = 0.675, Q3 = 0.825, IQR = 0.15;
    # median 0.75, std = sqrt(0.75 * 0.25 / 100) = 0.0433013, ratio = 0.15 / 0.0433013 = 3.4641.
    regime = population_regime(_records([1.0, 0.995, 0.99, 0.98], [0.6, 0.7, 0.8, 0.9], n_test=100))
    assert (regime.models, regime.fitted) == (4, 3)
    assert regime.fit_fraction == pytest.approx(0.75)
    assert (regime.test_q1, regime.test_median, regime.test_q3) == pytest.approx((0.675, 0.75, 0.825))
    assert regime.test_iqr == pytest.approx(0.15)
    assert regime.n_test == 100
    assert regime.binomial_std == pytest.approx(0.0433013, abs=1e-7)
    assert regime.spread_ratio == pytest.approx(3.4641016, abs=1e-6)
    assert not regime.fits and not regime.spreads and not regime.in_regime
    warning = regime.warning()
    assert "75%" in warning and "3.5x" in warning and "SPEC §4" in warning
    assert "3/4 models (75%)" in regime.summary() and "n = 100 test images" in regime.summary()


def test_a_population_in_the_regime_has_no_warning():
    # Q1 = 0.6, Q3 = 0.8, median 0.7, std = sqrt(0.21 / 10000) = 0.00458258, ratio 43.6436.
    regime = population_regime(_records([1.0] * 5, [0.5, 0.6, 0.7, 0.8, 0.9], n_test=10_000, key="n_test"))
    assert regime.fit_fraction == 1.0 and regime.test_iqr == pytest.approx(0.2)
    assert regime.spread_ratio == pytest.approx(0.2 / math.sqrt(0.21 / 10_000))
    assert regime.in_regime and regime.warning() is None


def test_fit_threshold_is_inclusive_at_95_percent():
    assert population_regime(_records([1.0] * 19 + [0.5], [0.5] * 20, n_test=10)).fits  # 19/20 = 0.95
    assert not population_regime(_records([1.0] * 18 + [0.5] * 2, [0.5] * 20, n_test=10)).fits


def test_enough_fit_but_too_little_spread_names_only_the_spread():
    # Sorted 0.8, 0.9, 0.9, 0.9, 0.9: Q1 at position 1 and Q3 at 3 are both 0.9 -> IQR 0, ratio 0.
    regime = population_regime(_records([1.0] * 5, [0.9, 0.9, 0.9, 0.9, 0.8], n_test=1000))
    assert regime.fits and regime.spread_ratio == 0.0
    assert "fit their training set" not in regime.warning() and "0.0x" in regime.warning()


def test_without_a_test_set_size_the_spread_is_unknown_and_not_in_the_regime():
    regime = population_regime(_records([1.0] * 4, [0.5, 0.6, 0.7, 0.8]))
    assert regime.n_test is None and regime.spread_ratio is None and not regime.in_regime
    assert "cannot be judged" in regime.warning() and "unknown" in regime.summary()


def test_disagreeing_test_sizes_take_the_smallest():
    records = _records([1.0] * 4, [0.5, 0.6, 0.7, 0.8], n_test=1000)
    records[2]["predictions"]["splits"]["test"] = 400
    regime = population_regime(records)
    assert regime.n_test == 400
    assert regime.binomial_std == pytest.approx(math.sqrt(0.65 * 0.35 / 400))


def test_a_perfect_median_model_has_no_sampling_noise():
    assert population_regime(_records([1.0] * 3, [0.9, 1.0, 1.0], n_test=50)).spread_ratio == math.inf
    assert population_regime(_records([1.0] * 3, [1.0, 1.0, 1.0], n_test=50)).spread_ratio == 0.0


def test_one_model_and_no_model():
    regime = population_regime(_records([1.0], [0.7], n_test=100))
    assert regime.test_iqr == 0.0 and not regime.in_regime
    with pytest.raises(ValueError, match="empty"):
        population_regime([])


def test_train_summary_prints_the_regime_and_warns(capsys):
    from icc_bench.cli import print_train_summary

    records = _records([1.0, 0.995, 0.99, 0.98], [0.6, 0.7, 0.8, 0.9], n_test=100)
    summary = SimpleNamespace(population="toy", total=4, trained=4, already_done=0, remaining=0, seconds=1.0, records=records, trained_elsewhere=0, refused={})
    print_train_summary(summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "regime: 3/4 models (75%) reach >= 99% train accuracy" in out
    assert "warning: toy is not in the paper's regime" in out
