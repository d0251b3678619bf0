"""The c1-c4 kernels against plain O(n^2) / loop references written here in float64 numpy.

The data are integer-valued (so float32 inputs are exact and ties abound), with repeated rows,
all-negative rows (zero activation rows), dead neurons, a one-sample subclass, a subclass absent
from the sample and a superclass with a single subclass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_samples

from icc_intraclass import kernels
from icc_intraclass.kernels import (
    c1_selectivity,
    c2_silhouette,
    c3_variance_ratio,
    c4_distance_spread,
    pairwise_cosine_distance_std,
    silhouette_samples_cosine,
    subclass_selectivity,
    topk_mean,
)
from icc_intraclass.settings import C1Settings, C2Settings, C3Settings, C4Settings

TOL = 1e-6
EPS = 1e-7
SEEDS = (0, 1, 2)

# Superclass of each subclass: 6 has no sample, 5 is alone in superclass 2, 2 has one sample.
FINE_TO_COARSE = np.array([0, 0, 0, 1, 1, 2, 1, 3, 3, 3])
SUBCLASS_SIZES = {0: 6, 1: 5, 2: 1, 3: 5, 4: 4, 5: 3, 7: 4, 8: 4, 9: 5}
LAYER_WIDTHS = (3, 17, 45)  # live neurons 2, 16, 44: percentiles 0, 38 (a .5 rounding), 75


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The inputs are tiny: on a busy host each of torch's parallel regions costs a scheduler
    # quantum, which made this file 3x slower. Restored for the modules that follow.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_probe(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer-valued pre-activations per layer and the subclass label of each sample."""
    rng = np.random.default_rng(seed)
    fine = np.concatenate([np.full(size, label) for label, size in SUBCLASS_SIZES.items()])
    rng.shuffle(fine)
    n = fine.shape[0]
    layers = []
    for width in LAYER_WIDTHS:
        x = rng.integers(-3, 4, size=(n, width)).astype(np.float64)
        x += (fine[:, None] % 3 == np.arange(width) % 3) * 2  # some subclass structure
        x[:, 0] = -1.0 - rng.integers(0, 3, size=n)  # a dead neuron
        x[3] = x[5]  # a repeated row
        x[7] = -1.0 - np.abs(x[7])  # all negative: a zero row once rectified
        layers.append(x)
    return layers, fine


def to_torch(layers: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.tensor(x, dtype=torch.float32) for x in layers]


# ----------------------------------------------------------------------------- references


def ref_cosine_distance(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 1.0
    return float(np.clip(1 - u @ v / (nu * nv), 0, 2))


def ref_silhouette(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    out = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if labels[j] == labels[i] and j != i]
        if not others:
            continue  # a cluster of one scores 0
        a = np.mean([ref_cosine_distance(x[i], x[j]) for j in others])
        b = min(
            np.mean([ref_cosine_distance(x[i], x[j]) for j in range(n) if labels[j] == c])
            for c in set(labels.tolist()) - {labels[i]}
        )
        out[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return out


def ref_distance_std(x: np.ndarray, pairs: str) -> float:
    n = x.shape[0]
    if pairs == "unordered":
        return float(np.std([ref_cosine_distance(x[i], x[j]) for i in range(n) for j in range(i + 1, n)]))
    matrix = [[0.0 if i == j else ref_cosine_distance(x[i], x[j]) for j in range(n)] for i in range(n)]
    return float(np.std(matrix))


def ref_topk(values: np.ndarray, k: int) -> float:
    return float(np.sort(values)[::-1][:k].mean())


def ref_selectivity(layers: list[np.ndarray], fine: np.ndarray, fine_to_coarse: np.ndarray) -> np.ndarray:
    x = np.concatenate(layers, axis=1)
    coarse = fine_to_coarse[fine]
    out = np.full((fine_to_coarse.shape[0], x.shape[1]), np.nan)
    for i in range(fine_to_coarse.shape[0]):
        own = fine == i
        rest = (coarse == fine_to_coarse[i]) & ~own
        if not own.any() or not rest.any():
            continue
        for n in range(x.shape[1]):
            if np.all(x[:, n] < 0):
                out[i, n] = 0.0
                continue
            spread = np.std(x[own, n]) + np.std(x[rest, n]) + EPS
            out[i, n] = (np.mean(x[own, n]) - np.mean(x[rest, n])) / spread
    return out


def ref_c1(layers, fine, fine_to_coarse, k, neuron_agg, subclass_agg) -> float:
    selectivity = ref_selectivity(layers, fine, fine_to_coarse)
    per_subclass = [
        (row.max() if neuron_agg == "max" else ref_topk(row, k)) for row in selectivity if not np.isnan(row[0])
    ]
    return float(np.median(per_subclass) if subclass_agg == "median" else np.mean(per_subclass))


def ref_c2(acts, fine, fine_to_coarse, k, subclass_agg) -> float:
    coarse = fine_to_coarse[fine]
    per_subclass = []
    for i in range(fine_to_coarse.shape[0]):
        members = coarse == fine_to_coarse[i]
        if not (fine == i).any() or len(set(fine[members].tolist())) < 2:
            continue
        sil_per_layer = [ref_silhouette(a[members], fine[members])[fine[members] == i].mean() for a in acts]
        per_subclass.append(ref_topk(np.array(sil_per_layer), k))
    return float(np.median(per_subclass) if subclass_agg == "median" else np.mean(per_subclass))


def ref_c3(layers, labels, k, neuron_agg, class_agg) -> float:
    x = np.concatenate(layers, axis=1)
    per_class = []
    for label in np.unique(labels):
        ratios = np.zeros(x.shape[1])
        for n in range(x.shape[1]):
            if not np.all(x[:, n] < 0):
                ratios[n] = np.std(x[labels == label, n]) / (np.std(x[:, n]) + EPS)
        per_class.append(ratios.max() if neuron_agg == "max" else ref_topk(ratios, k))
    return float(np.mean(per_class) if class_agg == "mean" else np.median(per_class))


def ref_c4_representation(x: np.ndarray) -> np.ndarray:
    live = x[:, ~np.all(x < 0, axis=0)]
    z = (live - live.mean(axis=0)) / (live.std(axis=0) + EPS)
    p = max(min(round(100 - 1000 / live.shape[1]), 75), 0)
    return np.maximum(z - np.percentile(z, p, axis=0), 0)


def ref_c4(layers, labels, k, class_agg, pairs) -> float:
    representations = [ref_c4_representation(x) for x in layers]
    spreads_all = [ref_distance_std(r, pairs) for r in representations]
    per_class = []
    for label in np.unique(labels):
        if pairs == "unordered" and (labels == label).sum() < 2:
            continue  # no pair: the class's spread is undefined and it is left out
        ratios = [
            ref_distance_std(r[labels == label], pairs) / (spread_all + EPS)
            for r, spread_all in zip(representations, spreads_all)
        ]
        per_class.append(ref_topk(np.array(ratios), k))
    return float(np.mean(per_class) if class_agg == "mean" else np.median(per_class))


# ----------------------------------------------------------------------------- silhouette


@pytest.mark.parametrize("seed", SEEDS)
def test_silhouette_matches_loop_reference_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(60, 5)).astype(np.float64)
    labels = rng.integers(0, 4, size=60)
    x[[4, 9, 30]] = 0.0  # zero rows, two of them possibly in one cluster
    x[11] = x[12]  # a repeated row
    labels[17] = 7  # a cluster of one
    fast = silhouette_samples_cosine(torch.tensor(x), torch.tensor(labels)).numpy()
    np.testing.assert_allclose(fast, ref_silhouette(x, labels), atol=TOL, rtol=0)
    np.testing.assert_allclose(fast, silhouette_samples(x, labels, metric="cosine"), atol=TOL, rtol=0)
    assert fast[17] == 0.0


def test_silhouette_zero_rows_follow_sklearn_convention():
    # Two zero rows in cluster 0: distance 1 to each other and to everything, 0 to themselves.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    fast = silhouette_samples_cosine(torch.tensor(x), torch.tensor(labels)).numpy()
    np.testing.assert_allclose(fast, silhouette_samples(x, labels, metric="cosine"), atol=TOL, rtol=0)
    assert fast[0] == 0.0  # a = mean(1, 1) = 1 = b


def test_silhouette_of_identical_points_is_zero():
    # Rescaled copies of one vector: a = b = 0 up to rounding, so s is scikit-learn's 0 / 0 -> 0,
    # not (noise - noise) / noise.
    scales = torch.tensor([0.3, 1.7, 2.9, 0.11, 5.3, 1.3], dtype=torch.float64)
    x = scales[:, None] * torch.tensor([0.3, 0.7, 0.1], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.equal(silhouette_samples_cosine(x, labels), torch.zeros(6, dtype=torch.float64))


def test_silhouette_is_permutation_equivariant():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.integers(-2, 3, size=(40, 4)).astype(np.float64))
    labels = torch.tensor(rng.integers(0, 3, size=40))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    relabelled = torch.tensor([2, 0, 1])[labels]  # cluster names do not matter
    base = silhouette_samples_cosine(x, labels)
    shuffled = silhouette_samples_cosine(x[order], relabelled[order])
    np.testing.assert_allclose(shuffled.numpy(), base[order].numpy(), atol=TOL, rtol=0)


def test_silhouette_needs_two_clusters():
    with pytest.raises(ValueError, match="at least two clusters"):
        silhouette_samples_cosine(torch.ones(4, 2), torch.zeros(4, dtype=torch.int64))


# ----------------------------------------------------------------------------- pairwise spread


@pytest.mark.parametrize("pairs", ["unordered", "full_matrix"])
@pytest.mark.parametrize("shape", [(40, 3), (7, 30), (25, 25)])  # d < n, d > n (chunked X X^T), d = n
def test_distance_std_matches_pair_loop(pairs, shape):
    rng = np.random.default_rng(shape[0])
    x = rng.integers(-2, 3, size=shape).astype(np.float64)
    x[[1, 2]] = 0.0  # two zero rows: distance 1 to each other
    x[4] = x[5]
    expected = ref_distance_std(x, pairs)
    assert pairwise_cosine_distance_std(torch.tensor(x), pairs=pairs) == pytest.approx(expected, abs=TOL)
    order = torch.randperm(shape[0], generator=torch.Generator().manual_seed(1))
    assert pairwise_cosine_distance_std(torch.tensor(x)[order], pairs=pairs) == pytest.approx(expected, abs=TOL)


def test_distance_std_gram_chunks_are_exact(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 40))
    monkeypatch.setattr(kernels, "_GRAM_CHUNK_ENTRIES", 20)  # 2 rows per chunk
    assert pairwise_cosine_distance_std(torch.tensor(x)) == pytest.approx(ref_distance_std(x, "unordered"), abs=TOL)


def test_distance_std_degenerate_sizes():
    one_row = torch.ones(1, 3)
    assert math.isnan(pairwise_cosine_distance_std(one_row, pairs="unordered"))  # no pair
    assert pairwise_cosine_distance_std(one_row, pairs="full_matrix") == 0.0  # the 1 x 1 matrix [0]
    assert math.isnan(pairwise_cosine_distance_std(torch.ones(0, 3), pairs="full_matrix"))
    assert pairwise_cosine_distance_std(torch.ones(5, 3)) == pytest.approx(0.0, abs=TOL)


# ----------------------------------------------------------------------------- c1


@pytest.mark.parametrize("seed", SEEDS)
def test_subclass_selectivity_matches_loop_reference(seed):
    layers, fine = make_probe(seed)
    fast = subclass_selectivity(to_torch(layers), torch.tensor(fine), torch.tensor(FINE_TO_COARSE))
    expected = ref_selectivity(layers, fine, FINE_TO_COARSE)
    np.testing.assert_allclose(fast.numpy(), expected, atol=TOL, rtol=0)  # NaN rows in the same places
    assert np.isnan(expected[[5, 6]]).all() and not np.isnan(expected[2]).any()
    # 8 defined subclasses: the median is numpy's mean of the middle two, not torch's lower median.
    assert (~np.isnan(expected[:, 0])).sum() == 8
    dead_columns = np.cumsum((0,) + LAYER_WIDTHS[:-1])  # column 0 of each layer is dead
    assert (fast.numpy()[~np.isnan(expected[:, 0])][:, dead_columns] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "options",
    [
        dict(k=30, neuron_agg="topk_mean", subclass_agg="median"),
        dict(k=4, neuron_agg="topk_mean", subclass_agg="mean"),
        dict(k=1, neuron_agg="max", subclass_agg="median"),
    ],
)
def test_c1_matches_loop_reference(seed, options):
    layers, fine = make_probe(seed)
    fast = c1_selectivity(to_torch(layers), torch.tensor(fine), torch.tensor(FINE_TO_COARSE), **options)
    assert isinstance(fast, float)
    assert fast == pytest.approx(ref_c1(layers, fine, FINE_TO_COARSE, **options), abs=TOL)


# ----------------------------------------------------------------------------- c2


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("options", [dict(k=5, subclass_agg="median"), dict(k=1, subclass_agg="mean")])
def test_c2_matches_loop_reference(seed, options):
    layers, fine = make_probe(seed)
    acts = [np.maximum(x, 0) for x in layers]
    fast = c2_silhouette(to_torch(acts), torch.tensor(fine), torch.tensor(FINE_TO_COARSE), **options)
    assert isinstance(fast, float)
    assert fast == pytest.approx(ref_c2(acts, fine, FINE_TO_COARSE, **options), abs=TOL)


def test_c2_silhouette_per_superclass_matches_sklearn():
    layers, fine = make_probe(1)
    acts = np.maximum(layers[2], 0)
    members = FINE_TO_COARSE[fine] == 0
    fast = silhouette_samples_cosine(torch.tensor(acts[members]), torch.tensor(fine[members])).numpy()
    np.testing.assert_allclose(fast, silhouette_samples(acts[members], fine[members], metric="cosine"), atol=TOL)


# ----------------------------------------------------------------------------- c3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "options",
    [
        dict(k=30, neuron_agg="topk_mean", class_agg="mean"),
        dict(k=7, neuron_agg="topk_mean", class_agg="median"),
        dict(k=1, neuron_agg="max", class_agg="mean"),
    ],
)
def test_c3_matches_loop_reference(seed, options):
    layers, fine = make_probe(seed)
    labels = FINE_TO_COARSE[fine] * 10 + 3  # arbitrary label values
    fast = c3_variance_ratio(to_torch(layers), torch.tensor(labels), **options)
    assert isinstance(fast, float)
    assert fast == pytest.approx(ref_c3(layers, labels, **options), abs=TOL)


def test_c3_dead_neurons_score_zero():
    dead = -torch.rand(20, 6) - 0.1  # every pre-activation < 0
    labels = torch.arange(20) % 3
    assert c3_variance_ratio([dead], labels) == 0.0
    live = torch.rand(20, 4)
    assert c3_variance_ratio([live, dead], labels, k=4) == pytest.approx(c3_variance_ratio([live], labels, k=4))


# ----------------------------------------------------------------------------- c4


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "options",
    [
        dict(k=5, class_agg="mean", pairs="unordered"),
        dict(k=1, class_agg="median", pairs="unordered"),
        dict(k=2, class_agg="mean", pairs="full_matrix"),
    ],
)
def test_c4_matches_loop_reference(seed, options):
    layers, fine = make_probe(seed)
    labels = FINE_TO_COARSE[fine]
    labels[fine == 2] = 4  # a class of one sample: left out for unordered pairs, 0 for the full matrix
    fast = c4_distance_spread(to_torch(layers), torch.tensor(labels), **options)
    assert isinstance(fast, float)
    assert fast == pytest.approx(ref_c4(layers, labels, **options), abs=TOL)


def test_c4_dead_neurons_and_layers():
    layers, fine = make_probe(0)
    labels = torch.tensor(FINE_TO_COARSE[fine])
    live = torch.tensor(layers[2][:, 1:], dtype=torch.float32)  # without its dead neuron
    dead_layer = -torch.rand(live.shape[0], 5) - 0.1
    alone = c4_distance_spread([live], labels)
    # Dead neurons are dropped: appending them changes nothing, not even the percentile.
    assert c4_distance_spread([torch.cat([live, dead_layer], dim=1)], labels) == pytest.approx(alone, abs=TOL)
    # A layer of dead neurons is skipped, and reads NaN in the per-layer output.
    assert c4_distance_spread([live, dead_layer], labels, k=2) == pytest.approx(alone, abs=TOL)
    per_layer = c4_distance_spread([live, dead_layer], labels, per_layer=True)
    assert per_layer[0] == pytest.approx(alone, abs=TOL) and math.isnan(per_layer[1])
    with pytest.raises(ValueError, match="every neuron of every layer is dead"):
        c4_distance_spread([dead_layer], labels)


# ----------------------------------------------------------------------------- shared properties


MEASURES = {
    "c1": lambda layers, fine, options: c1_selectivity(
        layers, fine, torch.tensor(FINE_TO_COARSE), **options
    ),
    "c2": lambda layers, fine, options: c2_silhouette(
        [torch.relu(x) for x in layers], fine, torch.tensor(FINE_TO_COARSE), **options
    ),
    "c3": lambda layers, fine, options: c3_variance_ratio(layers, torch.tensor(FINE_TO_COARSE)[fine], **options),
    "c4": lambda layers, fine, options: c4_distance_spread(layers, torch.tensor(FINE_TO_COARSE)[fine], **options),
}


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measures_are_permutation_invariant(name):
    layers, fine = make_probe(4)
    layers, fine = to_torch(layers), torch.tensor(fine)
    base = MEASURES[name](layers, fine, {})
    generator = torch.Generator().manual_seed(2)
    samples = torch.randperm(fine.shape[0], generator=generator)
    shuffled = [x[samples][:, torch.randperm(x.shape[1], generator=generator)] for x in layers]
    assert MEASURES[name](shuffled, fine[samples], {}) == pytest.approx(base, abs=TOL)
    assert MEASURES[name](shuffled[::-1], fine[samples], {}) == pytest.approx(base, abs=TOL)  # layer order


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_per_layer_is_the_measure_of_each_layer_alone(name):
    layers, fine = make_probe(5)
    layers, fine = to_torch(layers), torch.tensor(fine)
    per_layer = MEASURES[name](layers, fine, {"per_layer": True})
    assert isinstance(per_layer, list) and len(per_layer) == len(layers)
    for value, layer in zip(per_layer, layers):
        assert isinstance(value, float)
        assert value == pytest.approx(MEASURES[name]([layer], fine, {}), abs=TOL)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_k_is_clipped_to_what_there_is(name):
    layers, fine = make_probe(6)
    layers, fine = to_torch(layers), torch.tensor(fine)
    everything = sum(x.shape[1] for x in layers) if name in ("c1", "c3") else len(layers)
    assert MEASURES[name](layers, fine, {"k": 10**6}) == pytest.approx(
        MEASURES[name](layers, fine, {"k": everything}), abs=TOL
    )


def test_topk_mean_clips_k():
    values = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.0]])
    assert topk_mean(values, 2).tolist() == [2.5, 5.0]
    assert topk_mean(values, 99).tolist() == pytest.approx([2.0, 10 / 3])


def test_options_are_validated():
    layers, fine = make_probe(0)
    layers, fine = to_torch(layers), torch.tensor(fine)
    with pytest.raises(ValueError, match="k=0"):
        c3_variance_ratio(layers, fine, k=0)
    with pytest.raises(ValueError, match="neuron_agg='mean'"):
        c1_selectivity(layers, fine, torch.tensor(FINE_TO_COARSE), neuron_agg="mean")
    with pytest.raises(ValueError, match="pairs='upper'"):
        c4_distance_spread(layers, fine, pairs="upper")
    with pytest.raises(ValueError, match="fine_to_coarse has 3 entries"):
        c2_silhouette(layers, fine, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"preacts\[1\] has shape"):
        c3_variance_ratio([layers[0], layers[1][:5]], fine)


def test_settings_mirror_kernel_options():
    layers, fine = make_probe(0)
    layers, fine, mapping = to_torch(layers), torch.tensor(fine), torch.tensor(FINE_TO_COARSE)
    labels = mapping[fine]
    options = lambda settings: settings.model_dump(exclude={"probe_samples"})
    assert c1_selectivity(layers, fine, mapping, **options(C1Settings())) == c1_selectivity(layers, fine, mapping)
    assert c2_silhouette(layers, fine, mapping, **options(C2Settings())) == c2_silhouette(layers, fine, mapping)
    assert c3_variance_ratio(layers, labels, **options(C3Settings())) == c3_variance_ratio(layers, labels)
    assert c4_distance_spread(layers, labels, **options(C4Settings())) == c4_distance_spread(layers, labels)
    with pytest.raises(Exception, match="extra"):
        C4Settings(pair="unordered")
