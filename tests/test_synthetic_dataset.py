"""synthetic_hierarchy: determinism, shapes and labels, and that its subclasses are real clusters."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import pytest
import torch

from icc_bench.config import DatasetSpec
from icc_bench.data import load_dataset
from icc_bench.data.synthetic import (
    SyntheticHierarchyOptions,
    _hue_to_rgb,
    _segment_masks,
    build_synthetic_hierarchy,
)

SMALL = {"superclasses": 3, "subclasses": 2, "train_per_subclass": 5, "test_per_subclass": 7, "resolution": 12}


def _build(**options):
    return build_synthetic_hierarchy(SyntheticHierarchyOptions(**options), None)


FIELDS = ("x_train", "y_train", "x_test", "y_test", "fine_train", "fine_test", "fine_to_coarse", "x_heldout", "y_heldout")


def test_same_seed_gives_identical_data():
    a, b = _build(**SMALL, seed=3, heldout_per_subclass=4), _build(**SMALL, seed=3, heldout_per_subclass=4)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def _digest(ds) -> str:
    import hashlib

    h = hashlib.sha256()
    for field in FIELDS:
        h.update(getattr(ds, field).numpy().tobytes())
    return h.hexdigest()


def test_same_seed_gives_the_same_bytes_in_a_fresh_process_whatever_the_global_rng():
    # The images depend on `seed` alone: not on torch's global generator, nor on what ran before.
    import subprocess
    import sys

    torch.manual_seed(12345)
    torch.rand(100)
    here = _digest(_build(**SMALL, seed=5, heldout_per_subclass=4))
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "from test_synthetic_dataset import SMALL, _build, _digest\n"
        "print(_digest(_build(**SMALL, seed=5, heldout_per_subclass=4)))"
    )
    tests_dir = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", code, tests_dir], capture_output=True, text=True, check=True).stdout
    assert out.strip() == here


def test_heldout_is_a_third_independent_draw():
    with_heldout = _build(**SMALL, heldout_per_subclass=4)
    without = _build(**SMALL)
    assert without.x_heldout is None and without.y_heldout is None
    # Adding the held-out split changes neither train nor test, and it does not depend on their sizes.
    assert torch.equal(with_heldout.x_train, without.x_train) and torch.equal(with_heldout.x_test, without.x_test)
    other_sizes = _build(**{**SMALL, "train_per_subclass": 2, "test_per_subclass": 3}, heldout_per_subclass=4)
    assert torch.equal(with_heldout.x_heldout, other_sizes.x_heldout)
    # Balanced over superclasses (the held-out split has no subclass labels), of the same shape.
    assert with_heldout.x_heldout.shape == (3 * 2 * 4, 3, 12, 12)
    assert with_heldout.y_heldout.bincount().tolist() == [2 * 4] * 3
    # Distinct draws: no image appears in two splits.
    rows = {
        split: {tuple(image.flatten().tolist()) for image in getattr(with_heldout, f"x_{split}")}
        for split in ("train", "test", "heldout")
    }
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["heldout"] and not rows["test"] & rows["heldout"]


def test_default_test_set_has_at_least_ten_thousand_images():
    options = SyntheticHierarchyOptions()
    assert options.test_per_subclass * options.superclasses * options.subclasses >= 10_000


def test_load_dataset_normalizes_heldout_with_training_statistics_and_never_subsamples_it():
    from icc_bench.data.dataset import channel_statistics

    options = {**SMALL, "heldout_per_subclass": 4}
    raw = _build(**options)
    ds = load_dataset(DatasetSpec(name="synthetic_hierarchy", options=options))
    mean, std = channel_statistics(raw.x_train)  # the training set's, not the held-out split's own
    expected = (raw.x_heldout - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    torch.testing.assert_close(ds.x_heldout, expected, rtol=0, atol=1e-5)
    assert torch.equal(ds.y_heldout, raw.y_heldout)
    # train_per_class / test_per_class subsample train and test only: all 24 held-out images stay.
    sub = load_dataset(DatasetSpec(name="synthetic_hierarchy", options={**options, "train_per_class": 6, "test_per_class": 5}))
    assert sub.y_train.numel() == 3 * 6 and sub.y_test.numel() == 3 * 5
    assert torch.equal(sub.y_heldout, raw.y_heldout) and sub.x_heldout.shape == raw.x_heldout.shape


def test_different_seeds_give_different_data():
    a, b = _build(**SMALL, seed=0), _build(**SMALL, seed=1)
    assert not torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_test, b.x_test)


def test_shapes_label_ranges_and_hierarchy():
    ds = _build(**SMALL)
    assert ds.x_train.shape == (3 * 2 * 5, 3, 12, 12) and ds.x_test.shape == (3 * 2 * 7, 3, 12, 12)
    assert ds.x_train.dtype == torch.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.num_classes == 3 and ds.hierarchical and len(ds.class_names) == 3
    assert ds.fine_to_coarse.tolist() == [0, 0, 1, 1, 2, 2]
    for y, fine in ((ds.y_train, ds.fine_train), (ds.y_test, ds.fine_test)):
        assert y.dtype == fine.dtype == torch.int64
        assert torch.equal(y, ds.fine_to_coarse[fine])
    # Balanced: exactly train_per_subclass / test_per_subclass images of every subclass.
    assert ds.fine_train.bincount(minlength=6).tolist() == [5] * 6
    assert ds.fine_test.bincount(minlength=6).tolist() == [7] * 6


def test_training_images_do_not_depend_on_the_test_size():
    a = _build(**SMALL)
    b = _build(**{**SMALL, "test_per_subclass": 3})
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.fine_train, b.fine_train)


def test_load_dataset_normalizes_and_subsamples_it():
    ds = load_dataset(DatasetSpec(name="synthetic_hierarchy", options={**SMALL, "train_per_class": 4}))
    assert ds.y_train.bincount().tolist() == [4, 4, 4]
    assert ds.fine_train.bincount().tolist() == [2] * 6
    assert ds.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def _nearest_subclass_mean_accuracy(ds) -> float:
    """Within each superclass, classify test images to the closest training subclass mean (raw pixels)."""
    x_train, x_test = ds.x_train.flatten(1).double(), ds.x_test.flatten(1).double()
    correct = total = 0
    for superclass in range(ds.num_classes):
        subclasses = [f for f in range(ds.fine_to_coarse.numel()) if ds.fine_to_coarse[f] == superclass]
        means = [x_train[ds.fine_train == f].mean(dim=0) for f in subclasses]
        for image, label in zip(x_test[ds.y_test == superclass], ds.fine_test[ds.y_test == superclass].tolist()):
            distances = [float(((image - m) ** 2).sum()) for m in means]
            correct += subclasses[distances.index(min(distances))] == label
            total += 1
    return correct / total


def test_subclasses_are_clusters_but_not_trivially_separable():
    ds = _build(superclasses=4, subclasses=3, train_per_subclass=30, test_per_subclass=30)
    accuracy = _nearest_subclass_mean_accuracy(ds)
    chance = 1 / 3
    assert chance + 0.2 < accuracy < 0.99, accuracy


def test_segment_masks_match_a_per_pixel_reference():
    resolution = 9
    segments = torch.tensor([[[[-0.5, -0.4], [0.6, 0.3]], [[0.2, 0.2], [0.2, 0.2]]]])  # a line and a dot
    half_width = torch.tensor([[0.2, 0.3]])
    masks = _segment_masks(segments, half_width, resolution)
    pixel = 2 / resolution
    for m in range(2):
        (ax, ay), (bx, by) = segments[0, m].tolist()
        for row in range(resolution):
            for col in range(resolution):
                px, py = -1 + pixel * (col + 0.5), -1 + pixel * (row + 0.5)
                length_sq = (bx - ax) ** 2 + (by - ay) ** 2
                t = 0.0 if length_sq == 0 else min(max(((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / length_sq, 0), 1)
                d = math.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))
                expected = min(max((half_width[0, m].item() - d) / pixel + 0.5, 0.0), 1.0)
                assert masks[0, m, row * resolution + col].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("hue", [0.0, 0.1, 1 / 3, 0.5, 0.77, 0.999, 1.25])
def test_hue_to_rgb_is_hsv_at_full_saturation_and_value(hue):
    expected = colorsys.hsv_to_rgb(hue % 1.0, 1.0, 1.0)
    assert _hue_to_rgb(torch.tensor(hue)).tolist() == pytest.approx(expected, abs=1e-6)


def test_rendering_in_chunks_gives_the_same_images(monkeypatch):
    import icc_bench.data.synthetic as synthetic

    whole = _build(**SMALL)
    monkeypatch.setattr(synthetic, "_RENDER_BUDGET", 1)  # one image per rendering pass
    assert torch.equal(_build(**SMALL).x_train, whole.x_train)
