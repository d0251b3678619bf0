"""The bootstrap of the scores, the reference rows and the sign-error (SPEC §5)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from icc_bench.config import AXES, COMPOSITE_AXES
from icc_bench.reference import reference_rows
from icc_bench.scoring import conditional_mutual_information, granulated_kendall
from icc_bench.sign_error import noise_weight, sign_error
from icc_bench.uncertainty import (
    BootstrapSettings,
    PopulationDraws,
    cmi_draws,
    distinguishable,
    granulated_kendall_draws,
    interval,
    make_draws,
    paired_fraction,
)
from test_scoring import paper_grid_hyperparams


def _identity_draws(y: np.ndarray, hp: pd.DataFrame, axes: list[str]) -> PopulationDraws:
    """One 'draw' that takes every group once and the point target: the point estimate."""
    draws = make_draws(y, hp, axes, BootstrapSettings(draws=1))
    return PopulationDraws(y[:, None].astype(float), np.ones((len(y), 1)), draws.groups, draws.config, False, draws.settings)


@pytest.mark.parametrize("variant", ["tau_a", "tau_b"])
def test_vectorized_kendall_equals_granulated_kendall_with_ties_and_nans(variant):
    rng = np.random.default_rng(0)
    hp = paper_grid_hyperparams()
    hp = pd.concat([hp, hp], ignore_index=True)  # two seeds per configuration share a group
    y = rng.integers(0, 6, size=len(hp)) / 6.0  # ties in the target
    m = rng.integers(0, 4, size=len(hp)).astype(float)  # ties in the measure
    m[rng.choice(len(hp), 20, replace=False)] = np.nan
    expected = granulated_kendall(m, y, hp, variant=variant, higher_is_better=False)
    per_axis, total = granulated_kendall_draws(m, _identity_draws(y, hp, list(AXES)), hp, list(AXES),
                                               variant=variant, higher_is_better=False)
    for axis in AXES:
        assert per_axis[axis][0] == pytest.approx(expected.per_axis[axis], abs=1e-12, nan_ok=True), axis
    assert total[0] == pytest.approx(expected.total, abs=1e-12)


def test_cmi_draws_equal_the_point_cmi_of_each_draw():
    rng = np.random.default_rng(1)
    hp = paper_grid_hyperparams().iloc[rng.choice(192, 60, replace=False)].reset_index(drop=True)
    m = rng.integers(0, 5, size=60).astype(float)
    targets = rng.integers(0, 8, size=(60, 4)) / 8.0  # four draws, with ties
    draws = PopulationDraws(targets, np.ones_like(targets), {}, np.arange(60), True, BootstrapSettings(draws=4))
    got = cmi_draws(m, draws, hp, COMPOSITE_AXES)
    for b in range(4):
        expected = conditional_mutual_information(m, targets[:, b], hp, composite_axes=COMPOSITE_AXES).score
        assert got[b] == pytest.approx(expected, abs=1e-12)


def test_resampled_targets_are_the_accuracies_on_the_resampled_images():
    rng = np.random.default_rng(2)
    correct = rng.random((5, 50)) < 0.7
    hp = pd.DataFrame({"a": [0, 1, 0, 1, 0], "b": [0, 0, 1, 1, 2]})
    draws = make_draws(correct.mean(1), hp, ["a", "b"], BootstrapSettings(draws=3, seed=4), correct=correct,
                       offset=-np.full(5, 0.25))
    counts = np.random.default_rng(4).multinomial(50, np.full(50, 1 / 50), size=3)  # the images are drawn first
    assert draws.targets == pytest.approx((correct @ counts.T) / 50 - 0.25)
    assert draws.images_resampled


def _planted(groups: int, p: float, rng) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Groups of two models along axis 'a'; the measure orders a group right with probability p,
    so psi_a = 2p - 1 exactly in expectation."""
    hp = pd.DataFrame({"a": np.tile([0, 1], groups), "b": np.repeat(np.arange(groups), 2)})
    y = rng.normal(size=2 * groups)
    sign = np.repeat(np.where(rng.random(groups) < p, 1.0, -1.0), 2)
    return sign * y, y, hp


def test_interval_covers_a_planted_value_at_about_the_nominal_rate():
    # 200 seeded replications of 40 groups with psi_a = 0.5: a 90% interval should cover 0.5 in
    # about 90% of them. The binomial std of a coverage estimate from 200 is 0.021; the percentile
    # bootstrap of a mean of 40 also runs slightly narrow, so the band is [0.82, 0.96].
    rng = np.random.default_rng(10)
    covered = 0
    for replication in range(200):
        m, y, hp = _planted(40, 0.75, rng)
        draws = make_draws(y, hp, ["a", "b"], BootstrapSettings(draws=400, seed=replication))
        per_axis, _ = granulated_kendall_draws(m, draws, hp, ["a", "b"])
        lo, hi = interval(per_axis["a"], 0.9)
        covered += lo <= 0.5 <= hi
    assert 0.82 <= covered / 200 <= 0.96


def test_intervals_shrink_as_groups_grow():
    rng = np.random.default_rng(11)
    widths = []
    for groups in (10, 40, 160):
        m, y, hp = _planted(groups, 0.75, rng)
        draws = make_draws(y, hp, ["a", "b"], BootstrapSettings(draws=1000))
        per_axis, _ = granulated_kendall_draws(m, draws, hp, ["a", "b"])
        lo, hi = interval(per_axis["a"], 0.9)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.6 * widths[0]


def test_image_resampling_puts_the_targets_noise_in_the_interval():
    # Two models per group whose true accuracies are equal: every ordering is test-set noise. With
    # the images resampled the interval of a perfect-looking measure widens to include 0.
    rng = np.random.default_rng(12)
    groups, n_test = 30, 200
    hp = pd.DataFrame({"a": np.tile([0, 1], groups), "b": np.repeat(np.arange(groups), 2)})
    correct = rng.random((2 * groups, n_test)) < 0.8
    y = correct.mean(1)
    m = y.copy()  # agrees with the observed target exactly
    groups_only = make_draws(y, hp, ["a", "b"], BootstrapSettings(draws=500))
    with_images = make_draws(y, hp, ["a", "b"], BootstrapSettings(draws=500), correct=correct)
    lo_g, hi_g = interval(granulated_kendall_draws(m, groups_only, hp, ["a", "b"])[0]["a"], 0.9)
    lo_i, hi_i = interval(granulated_kendall_draws(m, with_images, hp, ["a", "b"])[0]["a"], 0.9)
    assert lo_g > 0.7  # groups alone: the measure matches every untied pair
    assert lo_i < 0.5 and hi_i - lo_i > 0.3


def test_random_reference_is_centred_on_zero_and_oracles_near_one():
    hp = paper_grid_hyperparams()
    rng = np.random.default_rng(13)
    y = rng.uniform(0.4, 0.9, size=len(hp))  # a wide spread against the oracle's noise
    ids = [f"m{i}" for i in range(len(hp))]
    totals, covered = [], 0
    for seed in range(20):
        refs = {r.name: r for r in reference_rows(ids, y, seed=seed, heldout_target=y + rng.normal(0, 0.002, len(y)))}
        draws = make_draws(y, hp, list(AXES), BootstrapSettings(draws=300, seed=seed))
        _, psi = granulated_kendall_draws(refs["random"].values, draws, hp, list(AXES))
        lo, hi = interval(psi, 0.9)
        covered += lo < 0.0 < hi
        totals.append(granulated_kendall(refs["random"].values, y, hp).total)
        assert granulated_kendall(refs["oracle_noise_0.01"].values, y, hp).total > 0.9
        assert granulated_kendall(refs["oracle_heldout"].values, y, hp).total > 0.9
        assert granulated_kendall(refs["oracle_noise_0.05"].values, y, hp).total > 0.5
    # A 90% interval of a measure with true Psi = 0 contains 0 in about 18 of 20 populations.
    assert covered >= 15
    assert abs(np.mean(totals)) < 0.05


def test_reference_values_do_not_depend_on_the_other_models():
    alone = {r.name: r.values[0] for r in reference_rows(["x"], np.array([0.5]), seed=3)}
    among = {r.name: r.values[1] for r in reference_rows(["w", "x"], np.array([0.2, 0.5]), seed=3)}
    assert alone == among
    assert "oracle_heldout" not in alone  # no held-out split, no row


def test_paired_fraction_and_distinguishable():
    x = np.array([0.1, 0.5, 0.3, np.nan])
    assert paired_fraction(x, x) == 0.5
    assert paired_fraction(np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.5)
    assert paired_fraction(np.ones(10), np.zeros(10)) == 1.0
    assert distinguishable(0.96, 0.9) and distinguishable(0.04, 0.9)
    assert not distinguishable(0.94, 0.9) and not distinguishable(0.5, 0.9)
    assert not distinguishable(float("nan"), 0.9)


def test_bootstrap_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="--bootstrap -1"):
        BootstrapSettings(draws=-1)
    with pytest.raises(ValueError, match="--ci 1.5"):
        BootstrapSettings(level=1.5)


# ---------------------------------------------------------------- sign-error


def test_noise_weight_by_hand():
    # n = 100, |dg| = 0.3: psi = (1 - 2 exp(-2 * 100 * 0.15^2))^2 = (1 - 2 e^-4.5)^2
    psi = (1 - 2 * np.exp(-4.5)) ** 2
    assert noise_weight(np.array([0.3]), 100)[0] == pytest.approx(psi - 0.5)
    assert noise_weight(np.array([0.01]), 100)[0] == 0.0  # within the noise: no weight


def test_sign_error_hand_worked_single_seed():
    # Three configurations along 'a' at b = 0, and one more at b = 1 (so b has one environment).
    hp = pd.DataFrame({"a": [0, 1, 2, 0], "b": [0, 0, 0, 1]})
    y = np.array([0.5, 0.8, 0.9, 0.2])
    m = np.array([1.0, 3.0, 2.0, 5.0])  # right on (0,1) and (0,2), wrong on (1,2) and on b
    se = sign_error(m, y, hp, ["a", "b"], n_test=1000)
    # a: environments (0,1) loss 0, (0,2) loss 0, (1,2) loss 1, each |dg| >= 0.1 so all kept.
    assert se.environments == {"a": 3, "b": 1, "all": 4}
    assert se.robust["a"] == 1.0 and se.mean["a"] == pytest.approx(1 / 3)
    assert se.robust["b"] == 1.0 and se.mean["all"] == pytest.approx(0.5)
    # Inverting the direction turns every loss round.
    flipped = sign_error(m, y, hp, ["a", "b"], n_test=1000, higher_is_better=False)
    assert flipped.robust["a"] == 1.0 and flipped.mean["a"] == pytest.approx(2 / 3) and flipped.mean["b"] == 0.0
    # With 100 test images, |dg| = 0.1 is within the noise (w > 0 needs n > 3.84 / dg^2): (1,2) is left out.
    small = sign_error(m, y, hp, ["a", "b"], n_test=100)
    assert small.environments["a"] == 2 and small.robust["a"] == 0.0


def test_sign_error_with_seeds_weights_pairs_and_applies_the_ess_threshold():
    # Two configurations along 'a', four seeds each: 16 seed pairs in one environment.
    hp = pd.DataFrame({"a": [0] * 4 + [1] * 4})
    y = np.array([0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9])
    m = np.array([0, 0, 0, 9, 1, 1, 1, 1], dtype=float)  # 4 of the 16 pairs inverted (the seed with m = 9)
    se = sign_error(m, y, hp, ["a"], n_test=1000)
    assert se.min_ess == 12 and se.environments["a"] == 1  # ESS = 16 with equal weights
    assert se.robust["a"] == pytest.approx(4 / 16)
    assert sign_error(m, y, hp, ["a"], n_test=1000, min_ess=20).environments["a"] == 0


def test_sign_error_grid_pairs_differ_in_exactly_one_axis():
    hp = paper_grid_hyperparams()
    y = np.linspace(0, 1, 192)
    se = sign_error(y, y, hp, list(AXES), n_test=10_000)
    expected = sum(
        1 for i, j in itertools.combinations(range(192), 2)
        if (hp.iloc[i] != hp.iloc[j]).sum() == 1
    )
    assert se.environments_total["all"] == expected
    assert se.robust["all"] == 0.0  # the target itself never errs
