"""Tests of icc_bench.scoring against hand-worked values and plain reference implementations."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from icc_bench.config import AXES, COMPOSITE_AXES, Grid
from icc_bench.scoring import (
    composite_label,
    conditional_mutual_information,
    granulated_kendall,
    kendall_tau,
    target_values,
)


# ---------------------------------------------------------------- plain references


def tau_a_double_loop(m, g):
    total, pairs = 0.0, 0
    for i in range(len(m)):
        for j in range(len(m)):
            if i != j:
                total += np.sign(m[i] - m[j]) * np.sign(g[i] - g[j])
                pairs += 1
    return total / pairs


def normalized_cmi_reference(m, g, keys):
    """I(V_g; V_m | U) / H(V_g | U) by counting, over ordered pairs i != j; keys[i][j] is U."""
    joint = Counter()
    for i in range(len(m)):
        for j in range(len(m)):
            if i != j:
                joint[(keys[i][j], np.sign(g[i] - g[j]), np.sign(m[i] - m[j]))] += 1
    n = sum(joint.values())
    p_u, p_ug, p_um = Counter(), Counter(), Counter()
    for (u, vg, vm), c in joint.items():
        p_u[u] += c / n
        p_ug[(u, vg)] += c / n
        p_um[(u, vm)] += c / n
    mutual = sum(
        (c / n) * math.log(p_u[u] * (c / n) / (p_ug[(u, vg)] * p_um[(u, vm)]))
        for (u, vg, vm), c in joint.items()
    )
    entropy = -sum(p * math.log(p / p_u[u]) for (u, _), p in p_ug.items())
    return mutual / entropy


def paper_grid_hyperparams() -> pd.DataFrame:
    """The 192 configurations of SPEC §4 (the paper's Appendix A), one row each."""
    grid = Grid(
        lr_wd=[(0.01, 0.0), (0.032, 0.0), (0.1, 0.0), (0.1, 4e-5)],
        batch_size=[100, 300],
        optimizer=["sgd", "adam"],
        dropout_aug=[(0.0, True), (0.0, False), (0.2, False), (0.4, False)],
        width_depth=[(1.0, 1.0), (1.5, 1.0), (1.0, 1.5)],
    )
    return pd.DataFrame([hp.axis_values() for hp in grid.expand()])


# ---------------------------------------------------------------- kendall_tau


def test_tau_a_by_hand():
    # pairs (0,1): dm +, dg + -> +1; (0,2): +,+ -> +1; (1,2): dm +, dg - -> -1; sum 1 over 3 pairs
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_tau_a_ties_count_as_zero():
    # tie in the measure: (0,1) dm 0 -> 0; (0,2) +1; (1,2) +1 -> 2/3
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    # tie in the target: (0,1) dg 0 -> 0; (0,2) +1; (1,2) +1 -> 2/3
    assert kendall_tau([1, 2, 3], [5, 5, 6]) == pytest.approx(2 / 3)


def test_tau_degenerate_cases():
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(kendall_tau([], []))
    assert math.isnan(kendall_tau([1, np.nan, 3], [1, 2, 3]))
    assert kendall_tau([4, 4, 4], [1, 2, 3]) == 0.0  # tau_a: every pair tied, each counts 0
    assert math.isnan(kendall_tau([4, 4, 4], [1, 2, 3], variant="tau_b"))
    assert math.isnan(kendall_tau([1, 2, 3], [7, 7, 7], variant="tau_b"))
    # equal infinities are a tie, not NaN: (0,1) 0; (0,2) +1; (1,2) +1
    assert kendall_tau([np.inf, np.inf, -np.inf], [3, 2, 1]) == pytest.approx(2 / 3)


def test_tau_a_matches_double_loop_on_random_data_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 20):
        m = rng.integers(0, 4, n).astype(float)
        g = rng.integers(0, 4, n).astype(float)
        assert kendall_tau(m, g) == pytest.approx(tau_a_double_loop(m, g), abs=1e-12)


def test_tau_b_matches_scipy_on_random_data_with_ties():
    rng = np.random.default_rng(1)
    for n in (5, 12, 40):
        m = rng.integers(0, 5, n).astype(float)
        g = rng.integers(0, 5, n).astype(float)
        expected = scipy.stats.kendalltau(m, g, variant="b").statistic
        assert kendall_tau(m, g, variant="tau_b") == pytest.approx(expected, abs=1e-12)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="tau_c"):
        kendall_tau([1, 2], [1, 2], variant="tau_c")


# ---------------------------------------------------------------- granulated_kendall

# A tied, non-Cartesian grid: weight decay varies only at lr 0.1.
#   model: lr    wd    bs   | m  g
#   0      0.01  0     100  | 1  0.5
#   1      0.1   0     100  | 2  0.7
#   2      0.1   4e-5  100  | 3  0.8
#   3      0.01  0     300  | 2  0.4
#   4      0.1   0     300  | 1  0.6
#   5      0.1   4e-5  300  | 4  0.9
SMALL = pd.DataFrame(
    {
        "learning_rate": [0.01, 0.1, 0.1, 0.01, 0.1, 0.1],
        "weight_decay": [0.0, 0.0, 4e-5, 0.0, 0.0, 4e-5],
        "batch_size": [100, 100, 100, 300, 300, 300],
        "optimizer": ["sgd"] * 6,
        "seed": [0, 1, 2, 3, 4, 5],  # not an axis: must split nothing
    }
)
SMALL_AXES = ("learning_rate", "weight_decay", "batch_size")
SMALL_M = np.array([1, 2, 3, 2, 1, 4], dtype=float)
SMALL_G = np.array([0.5, 0.7, 0.8, 0.4, 0.6, 0.9])


def test_granulated_by_hand_on_tied_grid():
    r = granulated_kendall(SMALL_M, SMALL_G, SMALL, axes=SMALL_AXES)
    # lr axis, groups by (wd, bs): {0,1}, {3,4}; {2} and {5} are single models, skipped.
    #   {0,1}: dm 1-2 < 0, dg .5-.7 < 0 -> +1;  {3,4}: dm 2-1 > 0, dg .4-.6 < 0 -> -1;  psi = 0
    # wd axis, groups by (lr, bs): {1,2}, {4,5}; {0} and {3} (lr 0.01) skipped.
    #   {1,2}: dm < 0, dg < 0 -> +1;  {4,5}: dm 1-4 < 0, dg .6-.9 < 0 -> +1;  psi = 1
    # bs axis, groups by (lr, wd): {0,3}, {1,4}, {2,5}
    #   {0,3}: dm 1-2 < 0, dg .5-.4 > 0 -> -1;  {1,4}: +,+ -> +1;  {2,5}: -,- -> +1;  psi = 1/3
    assert r.per_axis == pytest.approx({"learning_rate": 0.0, "weight_decay": 1.0, "batch_size": 1 / 3})
    assert r.groups == {"learning_rate": 2, "weight_decay": 2, "batch_size": 3}
    assert r.total == pytest.approx((0 + 1 + 1 / 3) / 3)
    assert (r.n_models, r.n_nan_dropped) == (6, 0)
    assert r.n_undefined_groups == {"learning_rate": 0, "weight_decay": 0, "batch_size": 0}


def test_axis_without_a_group_of_two_is_nan_and_left_out_of_total():
    # every model is sgd: no group in which the optimizer varies
    r = granulated_kendall(SMALL_M, SMALL_G, SMALL, axes=SMALL_AXES + ("optimizer",))
    assert math.isnan(r.per_axis["optimizer"])
    assert r.groups["optimizer"] == 0
    assert r.total == pytest.approx((0 + 1 + 1 / 3) / 3)  # the three other axes, as above


def test_higher_is_better_false_flips_the_sign():
    r = granulated_kendall(SMALL_M, SMALL_G, SMALL, axes=SMALL_AXES, higher_is_better=False)
    # tau_a is antisymmetric in the measure: every group's tau changes sign
    assert r.per_axis == pytest.approx({"learning_rate": 0.0, "weight_decay": -1.0, "batch_size": -1 / 3})
    assert r.total == pytest.approx(-(1 + 1 / 3) / 3)


@pytest.mark.parametrize("column", ["measure", "target"])
def test_nan_models_are_dropped_and_counted(column):
    m, g = SMALL_M.copy(), SMALL_G.copy()
    (m if column == "measure" else g)[1] = np.nan
    r = granulated_kendall(m, g, SMALL, axes=SMALL_AXES)
    # without model 1: lr {0} skipped, {3,4} -> -1; wd {2} skipped, {4,5} -> +1;
    # bs {0,3} -> -1, {4} skipped, {2,5} -> +1 -> 0
    assert r.per_axis == pytest.approx({"learning_rate": -1.0, "weight_decay": 1.0, "batch_size": 0.0})
    assert r.groups == {"learning_rate": 1, "weight_decay": 1, "batch_size": 2}
    assert (r.n_models, r.n_nan_dropped) == (5, 1)


def test_constant_groups_tau_a_counts_zero_tau_b_skips():
    m = SMALL_M.copy()
    m[0] = 2.0  # now m0 = m1 (lr group {0,1}) and m0 = m3 (bs group {0,3})
    a = granulated_kendall(m, SMALL_G, SMALL, axes=SMALL_AXES)
    # tau_a: {0,1} -> 0 and {3,4} -> -1: psi_lr = -1/2;  bs: {0,3} -> 0, {1,4} +1, {2,5} +1: 2/3
    assert a.per_axis == pytest.approx({"learning_rate": -0.5, "weight_decay": 1.0, "batch_size": 2 / 3})
    assert a.n_undefined_groups == {"learning_rate": 0, "weight_decay": 0, "batch_size": 0}
    b = granulated_kendall(m, SMALL_G, SMALL, axes=SMALL_AXES, variant="tau_b")
    # tau_b: the constant groups are undefined and skipped; a 2-model group's tau_b is +-1
    assert b.per_axis == pytest.approx({"learning_rate": -1.0, "weight_decay": 1.0, "batch_size": 1.0})
    assert b.n_undefined_groups == {"learning_rate": 1, "weight_decay": 0, "batch_size": 1}
    assert b.groups == {"learning_rate": 2, "weight_decay": 2, "batch_size": 3}


def test_repeated_seeds_share_a_group():
    # configurations A = (lr .01, bs 100), B = (lr .1, bs 100), C = (lr .01, bs 300), two seeds each
    hp = pd.DataFrame(
        {
            "learning_rate": [0.01, 0.01, 0.1, 0.1, 0.01, 0.01],
            "batch_size": [100, 100, 100, 100, 300, 300],
            "seed": [0, 1, 0, 1, 0, 1],
        }
    )
    #            A0  A1   B0  B1   C0  C1
    m = np.array([1, 2, 3, 4, 0, 5], dtype=float)
    g = np.array([1, 1.2, 2, 1.5, 0, 5])
    r = granulated_kendall(m, g, hp, axes=("learning_rate", "batch_size"))
    # lr axis: one group {A0, A1, B0, B1} (bs 100); {C0, C1} is one configuration, skipped.
    #   unordered pairs (dm, dg): A0A1 (-,-) +1, A0B0 (-,-) +1, A0B1 (-, 1-1.5 -) +1,
    #   A1B0 (-, 1.2-2 -) +1, A1B1 (-, 1.2-1.5 -) +1, B0B1 (-, 2-1.5 +) -1  -> 4/6 = 2/3
    #   (split by seed it would be {A0,B0} +1 and {A1,B1} +1 -> 1; counting {C0,C1} (+1): 5/6)
    # bs axis: one group {A0, A1, C0, C1} (lr .01): m and g both order C0 < A0 < A1 < C1 -> 1
    #   ({B0, B1}, one configuration, is discordant: counting it would give (1 - 1) / 2 = 0)
    assert r.per_axis == pytest.approx({"learning_rate": 2 / 3, "batch_size": 1.0})
    assert r.groups == {"learning_rate": 1, "batch_size": 1}
    assert r.total == pytest.approx(5 / 6)


def test_bad_inputs_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="same models"):
        granulated_kendall(SMALL_M[:5], SMALL_G, SMALL, axes=SMALL_AXES)
    with pytest.raises(ValueError, match="dropout"):
        granulated_kendall(SMALL_M, SMALL_G, SMALL, axes=SMALL_AXES + ("dropout",))


def test_paper_grid_groups_and_extremes():
    hp = paper_grid_hyperparams()
    assert len(hp) == 192
    rng = np.random.default_rng(2)
    g = rng.permutation(192) / 192.0  # distinct targets: no ties
    perfect = granulated_kendall(g, g, hp)
    assert perfect.per_axis == {axis: 1.0 for axis in AXES}
    assert perfect.total == 1.0
    # groups in which the axis varies, counted by hand from SPEC §4:
    #   lr: at wd 0 (3 lrs) x bs 2 x opt 2 x (drop, aug) 4 x (width, depth) 3 = 48
    #   wd: at lr 0.1, 2 x 2 x 4 x 3 = 48;   bs, opt: 4 x 2 x 4 x 3 = 96 pairs
    #   dropout: at aug no (3 dropouts): 4 x 2 x 2 x 3 = 48;  aug: at dropout 0: 48
    #   width: at depth 1 (2 widths): 4 x 2 x 2 x 4 = 64;  depth: at width 1: 64
    assert perfect.groups == {
        "learning_rate": 48, "batch_size": 96, "weight_decay": 48, "optimizer": 96,
        "dropout": 48, "augmentation": 48, "width": 64, "depth": 64,
    }
    noise = granulated_kendall(rng.normal(size=192), g, hp)
    # the noisiest axis averages 48 groups of +-1: standard deviation 1/sqrt(48) = 0.14
    assert all(abs(v) < 0.5 for v in noise.per_axis.values())
    assert abs(noise.total) < 0.2


# ---------------------------------------------------------------- conditional_mutual_information


def test_cmi_hand_worked_conditioning_explains_away():
    # three models; a varies, b is constant. The measure ranks the two a=0 models correctly,
    # but puts the a=1 model last while its target is best.
    hp = pd.DataFrame({"a": [0, 0, 1], "b": [0, 0, 0]})
    g = np.array([1.0, 2.0, 3.0])
    m = np.array([1.0, 2.0, 0.0])
    r = conditional_mutual_information(m, g, hp, composite_axes=(("a",), ("b",)))
    # ordered pairs (V_g, V_m): (0,1) (-,-), (1,0) (+,+), (0,2) (-,+), (1,2) (-,+),
    #                           (2,0) (+,-), (2,1) (+,-)
    # unconditioned: p(-,-) = p(+,+) = 1/6, p(-,+) = p(+,-) = 1/3, all marginals 1/2
    #   I = 2/6 ln((1/6)/(1/4)) + 2/3 ln((1/3)/(1/4)) = 1/3 ln(2/3) + 2/3 ln(4/3);  H(V_g) = ln 2
    expected_unconditioned = (math.log(2 / 3) / 3 + 2 * math.log(4 / 3) / 3) / math.log(2)
    assert r.unconditioned == pytest.approx(expected_unconditioned)  # = 0.0817 bits / bit
    # conditioned on U = (a_i, a_j, b_i, b_j), each cell holds 2 pairs (p(u) = 1/3):
    #   (0,0,0,0): (-,-), (+,+): I = H = ln 2;   (0,1,0,0): (-,+) twice: I = H = 0;
    #   (1,0,0,0): (+,-) twice: I = H = 0   ->  (ln 2 / 3) / (ln 2 / 3) = 1
    assert r.per_pair == {("a", "b"): pytest.approx(1.0)}
    assert r.score == pytest.approx(1.0)
    assert (r.n_models, r.n_nan_dropped, r.n_pairs) == (3, 0, 6)


def test_cmi_tie_is_its_own_symbol():
    hp = pd.DataFrame({"a": [0, 0, 0], "b": [0, 0, 0]})
    g = np.array([1.0, 2.0, 3.0])
    m = np.array([1.0, 1.0, 2.0])
    r = conditional_mutual_information(m, g, hp, composite_axes=(("a",), ("b",)))
    # pairs (V_g, V_m): (0,1) (-,0), (1,0) (+,0), (0,2) (-,-), (2,0) (+,+), (1,2) (-,-), (2,1) (+,+)
    # p(-,0) = p(+,0) = 1/6, p(-,-) = p(+,+) = 1/3; p_g = 1/2 each, p_m = 1/3 each
    # I = 2/6 ln((1/6)/(1/6)) + 2/3 ln((1/3)/(1/6)) = 2/3 ln 2;  H(V_g) = ln 2  ->  2/3
    # (dropping ties would give 1; merging ties into "-" as PGDL does gives another number)
    assert r.unconditioned == pytest.approx(2 / 3)
    assert r.score == pytest.approx(2 / 3)


def test_cmi_matches_counting_reference_on_random_grid_with_ties():
    rng = np.random.default_rng(3)
    hp = pd.DataFrame(
        [
            {"lr": lr, "wd": wd, "bs": bs, "opt": opt}
            for (lr, wd), bs, opt in itertools.product([(1, 0), (2, 0), (2, 1)], [10, 30], ["s", "a"])
        ]
        * 2  # two seeds per configuration
    )
    composite = (("lr", "wd"), ("bs",), ("opt",))
    m = rng.integers(0, 4, len(hp)).astype(float)
    g = rng.integers(0, 4, len(hp)).astype(float)
    r = conditional_mutual_information(m, g, hp, composite_axes=composite)
    rows = [tuple(tuple(row[c] for c in comp) for comp in composite) for _, row in hp.iterrows()]
    for a, b in itertools.combinations(range(len(composite)), 2):
        keys = [
            [(rows[i][a], rows[j][a], rows[i][b], rows[j][b]) for j in range(len(hp))]
            for i in range(len(hp))
        ]
        label = (composite_label(composite[a]), composite_label(composite[b]))
        assert r.per_pair[label] == pytest.approx(normalized_cmi_reference(m, g, keys))
    flat = [[0] * len(hp) for _ in range(len(hp))]
    assert r.unconditioned == pytest.approx(normalized_cmi_reference(m, g, flat))
    assert r.score == min(r.per_pair.values())


def test_cmi_invariant_to_model_order_and_measure_direction():
    hp = paper_grid_hyperparams()
    rng = np.random.default_rng(4)
    g = rng.normal(size=192)
    m = g + rng.normal(size=192)
    base = conditional_mutual_information(m, g, hp)
    order = rng.permutation(192)
    shuffled = conditional_mutual_information(m[order], g[order], hp.iloc[order])
    flipped = conditional_mutual_information(m, g, hp, higher_is_better=False)
    assert shuffled.per_pair == pytest.approx(base.per_pair)
    assert flipped.per_pair == pytest.approx(base.per_pair)


def test_cmi_drops_nan_models():
    hp = pd.DataFrame({"a": [0, 0, 1, 1], "b": [0, 0, 0, 0]})
    g = np.array([1.0, 2.0, 3.0, np.nan])
    m = np.array([1.0, 2.0, 0.0, 5.0])
    r = conditional_mutual_information(m, g, hp, composite_axes=(("a",), ("b",)))
    # without model 3 this is the hand-worked case above
    assert (r.n_models, r.n_nan_dropped, r.n_pairs) == (3, 1, 6)
    assert r.score == pytest.approx(1.0)


def test_cmi_on_paper_grid_perfect_and_random():
    hp = paper_grid_hyperparams()
    rng = np.random.default_rng(5)
    g = rng.normal(size=192)
    perfect = conditional_mutual_information(g, g, hp)
    labels = [composite_label(c) for c in COMPOSITE_AXES]
    assert set(perfect.per_pair) == set(itertools.combinations(labels, 2))  # the 10 pairs
    assert perfect.score == pytest.approx(1.0)
    assert perfect.unconditioned == pytest.approx(1.0)
    noise = conditional_mutual_information(rng.normal(size=192), g, hp)
    assert 0.0 <= noise.score < 0.1
    assert 0.0 <= noise.unconditioned < 0.01


def test_cmi_needs_two_composite_axes():
    with pytest.raises(ValueError, match="at least two"):
        conditional_mutual_information([1, 2], [1, 2], pd.DataFrame({"a": [0, 1]}), composite_axes=(("a",),))


# ---------------------------------------------------------------- target_values


def test_target_values_orientation():
    records = pd.DataFrame({"train_accuracy": [1.0, 0.9, 0.95], "test_accuracy": [0.7, 0.8, 0.6]})
    np.testing.assert_array_equal(target_values(records, "test_accuracy"), [0.7, 0.8, 0.6])
    # gap train - test = [0.3, 0.1, 0.35]; the smallest gap generalizes best, so returned = -gap
    np.testing.assert_allclose(target_values(records, "generalization_gap"), [-0.3, -0.1, -0.35])
    with pytest.raises(ValueError, match="train_accuracy"):
        target_values(records[["test_accuracy"]], "generalization_gap")
    with pytest.raises(ValueError, match="test_loss"):
        target_values(records, "test_loss")
