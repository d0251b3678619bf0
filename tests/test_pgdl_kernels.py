"""The kernels of the PGDL winners' measures (plugins/icc_pgdl) against their formulas.

Each kernel is checked on an input small enough to work out by hand, and where a plain reference
exists (scikit-learn's Davies-Bouldin index, Python's colorsys, an explicit Laplacian, loops), on
random inputs against it.
"""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
from sklearn.metrics import davies_bouldin_score

from icc_pgdl.augment import (
    adjust_contrast,
    adjust_saturation,
    central_crop_resize,
    draw_erase_boxes,
    erase,
    sobel_dx,
    zoom,
)
from icc_pgdl.davies_bouldin import davies_bouldin, pooled_features
from icc_pgdl.label_variation import VARIATION_SCALE, knn_cosine_graph, label_variation, variation_rate
from icc_pgdl.mixup import class_groups, class_loss, mix_all_pairs
from icc_pgdl.robustness import PENALTIES, augmentation_penalty
from icc_pgdl.sampling import canonical_order, seeded_stream

# -- Davies-Bouldin -----------------------------------------------------------------------------

# Three 1-D clusters: {0, 2} (centroid 1, S = 1), {10, 12} (11, 1), {20, 24} (22, 2).
# M_01 = 10, M_02 = 21, M_12 = 11, so R_01 = 2/10, R_02 = 3/21, R_12 = 3/11.
HAND_FEATURES = torch.tensor([[0.0], [2.0], [10.0], [12.0], [20.0], [24.0]])
HAND_LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
R01, R02, R12 = 2 / 10, 3 / 21, 3 / 11


def test_davies_bouldin_by_hand():
    textbook = (max(R01, R02) + max(R01, R12) + max(R02, R12)) / 3
    assert davies_bouldin(HAND_FEATURES, HAND_LABELS, pair_reduction="max") == pytest.approx(textbook, rel=1e-12)
    # Their reading: each row's mean over all three clusters, the zero diagonal included.
    theirs = ((R01 + R02) / 3 + (R01 + R12) / 3 + (R02 + R12) / 3) / 3
    assert davies_bouldin(HAND_FEATURES, HAND_LABELS) == pytest.approx(theirs, rel=1e-12)


def test_textbook_davies_bouldin_is_scikit_learns():
    g = torch.Generator().manual_seed(0)
    for n_clusters in (2, 3, 7):
        x = torch.randn(60, 5, generator=g) + torch.randint(0, 3, (60, 1), generator=g)
        labels = torch.arange(60) % n_clusters
        expected = davies_bouldin_score(x.double().numpy(), labels.numpy())
        assert davies_bouldin(x, labels, pair_reduction="max") == pytest.approx(expected, rel=1e-10)


def test_mean_all_reading_matches_a_plain_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (40,), generator=g)
    groups = [x[labels == k] for k in range(4)]
    centroids = [group.mean(0) for group in groups]
    scatter = [float((group - c).norm(dim=1).mean()) for group, c in zip(groups, centroids)]
    rows = []
    for k in range(4):
        row = [0.0 if j == k else (scatter[k] + scatter[j]) / float((centroids[k] - centroids[j]).norm()) for j in range(4)]
        rows.append(sum(row) / 4)
    assert davies_bouldin(x, labels, pair_reduction="mean_all") == pytest.approx(sum(rows) / 4, rel=1e-12)


def test_davies_bouldin_degenerate_cases():
    # Every point on its centroid: no scatter, index 0 (both codes' explicit case).
    points = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert davies_bouldin(points, torch.tensor([0, 0, 1, 1])) == 0.0
    # Two clusters with the same centroid: R = 0 between them (scikit-learn's convention), so the
    # third cluster alone contributes.
    x = torch.tensor([[-1.0], [1.0], [-2.0], [2.0], [10.0], [12.0]])
    r = (1 + 1) / 11  # cluster 2 (S = 1, centroid 11) against cluster 0 (S = 1, centroid 0)
    r12 = (2 + 1) / 11
    expected = (max(0.0, r) + max(0.0, r12) + max(r, r12)) / 3
    assert davies_bouldin(x, torch.tensor([0, 0, 1, 1, 2, 2]), pair_reduction="max") == pytest.approx(expected)
    with pytest.raises(ValueError, match="2 to n_samples - 1"):
        davies_bouldin(x, torch.zeros(6, dtype=torch.int64))
    with pytest.raises(ValueError, match="pair_reduction"):
        davies_bouldin(x, torch.tensor([0, 0, 1, 1, 2, 2]), pair_reduction="min")


def test_pooled_features_max_pool_the_map_and_clip_the_window():
    maps = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    pooled = pooled_features(maps, 4)  # (2, 3 x 2 x 2)
    assert pooled.shape == (2, 12)
    assert pooled[0, 0] == maps[0, 0, :4, :4].max() and pooled[1, -1] == maps[1, 2, 4:, 4:].max()
    assert torch.equal(pooled_features(maps, 16), maps.amax(dim=(2, 3)))  # a window larger than the map


# -- label-wise mixup ---------------------------------------------------------------------------


def test_mix_all_pairs_by_hand():
    x = torch.tensor([[0.0], [2.0], [6.0]])
    assert torch.equal(mix_all_pairs(x), torch.tensor([[1.0], [3.0], [4.0]]))  # (0,1), (0,2), (1,2)
    assert mix_all_pairs(torch.ones(10, 3, 4, 4)).shape == (45, 3, 4, 4)


def test_class_loss_by_hand():
    outputs = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]])  # arg-max 0, 1, 0 (first on ties)
    assert class_loss(outputs, 0) == pytest.approx(1 / 3)
    expected_ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3)) + math.log(2)) / 3
    assert class_loss(outputs, 0, mixup_loss="cross_entropy") == pytest.approx(expected_ce, rel=1e-12)
    with pytest.raises(ValueError, match="mixup_loss"):
        class_loss(outputs, 0, mixup_loss="hinge")


def test_class_groups_cut_each_class_in_order_and_drop_single_leftovers():
    labels = torch.tensor([0] * 12 + [1] * 21 + [2])
    order = torch.arange(34).flip(0)
    groups = class_groups(order, labels, group_size=10, groups=2)
    assert sorted(groups) == [0, 1]  # class 2 has one image: nothing to mix
    assert [len(g) for g in groups[0]] == [10, 2]
    assert [len(g) for g in groups[1]] == [10, 10]  # at most 2 groups; the single leftover would be dropped anyway
    assert groups[1][0].tolist() == list(range(32, 22, -1))  # in the given order


# -- augmentations and the robustness penalty ---------------------------------------------------


def test_augmentation_penalty_by_hand():
    def log(p):
        return torch.log(torch.tensor(p, dtype=torch.float64))

    original = log([[0.7, 0.3], [0.2, 0.8]])
    same_class = log([[0.6, 0.4], [0.1, 0.9]])  # |0.7 - 0.6| + |0.8 - 0.9|
    changed = log([[0.4, 0.6], [0.2, 0.8]])  # image 0 changes class, image 1 does not
    views = [same_class, changed] + [original] * 5
    penalty = augmentation_penalty(original, views)
    assert penalty.tolist() == pytest.approx([0.1 + PENALTIES[1], 0.1 + 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="one per penalty"):
        augmentation_penalty(original, views[:3])


def test_saturation_scales_hsv_saturation_as_colorsys():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 2, 2, generator=g)
    factors = torch.tensor([0.6, 1.0, 1.3])
    out = adjust_saturation(x, factors)
    for b in range(3):
        for i in range(2):
            for j in range(2):
                h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb(h, s * float(factors[b]), v)  # saturation stays <= 1 here
                if s * float(factors[b]) <= 1:
                    assert out[b, :, i, j].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(adjust_saturation(x[:, :1], factors), x[:, :1])  # one channel: unchanged


def test_sobel_dx_against_a_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64)
    kernel = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]

    def reflect(i, n):  # TensorFlow's REFLECT padding of one pixel: -1 -> 1, n -> n - 2
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    expected = torch.empty_like(x)
    for b in range(2):
        for c in range(3):
            for i in range(5):
                for j in range(4):
                    total = sum(kernel[a][d] * x[b, c, reflect(i + a - 1, 5), reflect(j + d - 1, 4)] for a in range(3) for d in range(3))
                    expected[b, c, i, j] = total / 4 + 0.5
    assert torch.allclose(sobel_dx(x), expected, atol=1e-12)


def test_central_crop_resize_of_a_ramp():
    ramp = torch.arange(16, dtype=torch.float64).repeat(16, 1).view(1, 1, 16, 16)  # x[..., j] = j
    out = central_crop_resize(ramp, 0.9)  # TensorFlow would drop int(0.8) = 0 pixels; we drop 1
    # The crop holds columns 1..14; output column j samples the crop at (j + 0.5) 14/16 - 0.5, clamped.
    expected = [1 + min(max((j + 0.5) * 14 / 16 - 0.5, 0.0), 13.0) for j in range(16)]
    assert out[0, 0, 5].tolist() == pytest.approx(expected, abs=1e-12)
    wide = torch.arange(32, dtype=torch.float64).repeat(32, 1).view(1, 1, 32, 32)
    assert central_crop_resize(wide, 0.9)[0, 0, 0, 16].item() == pytest.approx(1 + (16.5 * 30 / 32 - 0.5))  # int(1.6) = 1 pixel


def test_zoom_samples_the_central_box():
    ramp = torch.arange(9, dtype=torch.float64).repeat(9, 1).view(1, 1, 9, 9)
    assert torch.allclose(zoom(ramp, torch.tensor([1.0])), ramp, atol=1e-12)
    s = 0.85  # output column j samples (9 - 1)(1 - s)/2 + j s
    expected = torch.tensor([(8 * (1 - s) / 2) + j * s for j in range(9)], dtype=torch.float64)
    assert torch.allclose(zoom(ramp, torch.tensor([s]))[0, 0, 4], expected, atol=1e-12)


def test_contrast_scales_about_each_channels_mean():
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[1.0, 1.0], [1.0, 5.0]]]])  # means 3 and 2
    out = adjust_contrast(x, torch.tensor([0.5]))
    assert torch.equal(out, torch.tensor([[[[1.5, 2.5], [3.5, 4.5]], [[1.5, 1.5], [1.5, 3.5]]]]))


def test_erase_boxes_follow_their_bounds_and_zero_the_box():
    g = torch.Generator().manual_seed(0)
    boxes = draw_erase_boxes(2000, 16, 16, g)
    top, left, h, w = boxes.T
    # area 256: low = round(sqrt(1.536)) = 1, high = round(sqrt(341.3)) = 18 -> 16 (exclusive)
    assert h.min() == 1 and h.max() == 15 and w.min() == 1 and w.max() == 15
    assert (top >= 0).all() and (top + h < 16).all() and (left >= 0).all() and (left + w < 16).all()
    x = torch.ones(1, 2, 5, 5)
    out = erase(x, torch.tensor([[1, 2, 3, 2]]))
    expected = torch.ones(1, 2, 5, 5)
    expected[:, :, 1:4, 2:4] = 0
    assert torch.equal(out, expected)


# -- label variation ----------------------------------------------------------------------------

# Four unit vectors with easy cosines: p0.p1 = 0.8, p0.p2 = 0.6, p0.p3 = 0, p1.p2 = 0.96,
# p1.p3 = 0.6, p2.p3 = 0.8.
POINTS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])


def test_knn_cosine_graph_by_hand():
    # k = 1: 0 -> 1 (0.8), 1 -> 2 (0.96), 2 -> 1, 3 -> 2 (0.8); kept by either end.
    expected = torch.zeros(4, 4, dtype=torch.float64)
    for i, j, w in ((0, 1, 0.8), (1, 2, 0.96), (2, 3, 0.8)):
        expected[i, j] = expected[j, i] = w
    assert torch.allclose(knn_cosine_graph(POINTS * torch.tensor([[1.0], [2.0], [3.0], [0.5]]), k=1), expected, atol=1e-12)
    # Negative similarities are clipped to 0, a zero row has none, and k is clipped to n - 1.
    graph = knn_cosine_graph(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]), k=20)
    assert torch.equal(graph, torch.zeros(3, 3, dtype=torch.float64))


def test_label_variation_by_hand_and_as_the_laplacian_trace():
    graph = knn_cosine_graph(POINTS, k=1)
    assert label_variation(graph, torch.tensor([0, 0, 1, 1])) == pytest.approx(2 * 0.96)  # only edge 1-2 crosses
    assert label_variation(graph, torch.tensor([0, 1, 0, 1])) == pytest.approx(2 * (0.8 + 0.96 + 0.8))
    g = torch.Generator().manual_seed(0)
    features = torch.randn(30, 6, generator=g)
    labels = torch.randint(0, 3, (30,), generator=g)
    w = knn_cosine_graph(features, k=5)
    laplacian = torch.diag(w.sum(1)) - w
    one_hot = torch.nn.functional.one_hot(labels).to(torch.float64)
    assert label_variation(w, labels) == pytest.approx(float(torch.trace(one_hot.T @ laplacian @ one_hot)), rel=1e-12)


def test_variation_rate_is_the_mean_absolute_change():
    labels = torch.tensor([0, 0, 1, 1])
    crossing = POINTS  # variation 1.92 at k = 1
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])  # neighbours share labels
    v = 2 * 0.96 / VARIATION_SCALE
    assert variation_rate([crossing, separated, crossing], labels, k=1) == pytest.approx(v)  # (v + v) / 2
    assert variation_rate([crossing], labels, k=1) == 0.0


# -- sampling -----------------------------------------------------------------------------------


def test_canonical_order_and_stream_do_not_depend_on_the_sample_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (20,), generator=g)
    permutation = torch.randperm(20, generator=g)
    assert torch.equal(x[canonical_order(x, labels)], x[permutation][canonical_order(x[permutation], labels[permutation])])
    stream = seeded_stream(x, labels, 45, torch.Generator().manual_seed(3))
    permuted = seeded_stream(x[permutation], labels[permutation], 45, torch.Generator().manual_seed(3))
    assert torch.equal(x[stream], x[permutation][permuted])
    assert [sorted(part.tolist()) for part in stream[:40].split(20)] == [list(range(20))] * 2  # each pass a permutation
