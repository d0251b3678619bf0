"""digits: the hard variant's options (train_per_digit, held-out split, pixel noise), its split and seeds."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from icc_bench.config import DatasetSpec
from icc_bench.data import DataError, load_dataset
from icc_bench.data.dataset import channel_statistics
from icc_bench.data.digits import DigitsOptions, _stratified_split, build_digits

# The digits_mini setting, written out here so that a change of the spec does not silently change the test.
HARD = {"resolution": 8, "test_fraction": 0.64, "heldout_fraction": 0.24, "train_per_digit": 20, "noise": 0.25}
FIELDS = ("x_train", "y_train", "x_test", "y_test", "fine_train", "fine_test", "fine_to_coarse", "x_heldout", "y_heldout")


@pytest.fixture(scope="module")
def bunch():
    from sklearn.datasets import load_digits

    return load_digits()


def _digest(ds) -> str:
    h = hashlib.sha256()
    for field in FIELDS:
        h.update(getattr(ds, field).numpy().tobytes())
    return h.hexdigest()


def _build(**options):
    return build_digits(DigitsOptions(**options), None)


def test_same_seeds_give_the_same_images_bit_for_bit_in_a_fresh_process():
    torch.manual_seed(999)  # the global generator must not matter
    torch.rand(10)
    a, b = _build(**HARD), _build(**HARD)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1]]\n"
        "from test_digits_dataset import HARD, _build, _digest\n"
        "print(_digest(_build(**HARD)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(a)


def test_noise_seed_changes_the_noise_only_and_split_seed_the_split_only():
    base = _build(**HARD)
    other_noise = _build(**HARD, noise_seed=1)
    assert torch.equal(base.fine_train, other_noise.fine_train) and not torch.equal(base.x_train, other_noise.x_train)
    other_split = _build(**HARD, split_seed=1)
    assert not torch.equal(base.fine_test, other_split.fine_test)


def test_split_is_stratified_and_disjoint(bunch):
    labels = torch.as_tensor(bunch.target)
    train, test, heldout = _stratified_split(labels, 0.64, 0, heldout_fraction=0.24, train_per_digit=20)
    sets = [set(split.tolist()) for split in (train, test, heldout)]
    assert sum(map(len, sets)) == train.numel() + test.numel() + heldout.numel()  # no index twice in a split
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    for d in range(10):
        n_d = int((labels == d).sum())
        assert int((labels[train] == d).sum()) == 20
        assert int((labels[test] == d).sum()) == round(0.64 * n_d)
        assert int((labels[heldout] == d).sum()) == round(0.24 * n_d)
    # And the images: with noise, no image (pixel for pixel) is in two splits.
    ds = _build(**HARD)
    rows = {split: {tuple(x.flatten().tolist()) for x in getattr(ds, f"x_{split}")} for split in ("train", "test", "heldout")}
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["heldout"] and not rows["test"] & rows["heldout"]
    assert ds.fine_train.bincount(minlength=10).tolist() == [20] * 10


def test_images_are_the_resized_digits_plus_the_seeded_noise(bunch):
    ds = _build(**{**HARD, "resolution": 12})
    train, _, _ = _stratified_split(torch.as_tensor(bunch.target), 0.64, 0, heldout_fraction=0.24, train_per_digit=20)
    clean = F.interpolate(torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0, size=(12, 12), mode="bilinear")
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))  # drawn for all 1,797 images, in order
    expected = (clean + 0.25 * noise).clamp(0.0, 1.0)[train]
    torch.testing.assert_close(ds.x_train, expected, rtol=0, atol=0)


def test_heldout_is_normalized_with_training_statistics_and_not_subsampled():
    raw = _build(**HARD)
    ds = load_dataset(DatasetSpec(name="digits", options={**HARD, "test_per_class": 10}))
    mean, std = channel_statistics(raw.x_train)
    torch.testing.assert_close(ds.x_heldout, (raw.x_heldout - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), rtol=0, atol=1e-5)
    assert torch.equal(ds.y_heldout, raw.y_heldout) and ds.y_test.numel() == 5 * 10


def test_impossible_splits_are_one_clear_sentence():
    with pytest.raises(DataError, match="train_per_digit=100 needs 100 training images of digit 0.*lower one of them"):
        load_dataset(DatasetSpec(name="digits", options={**HARD, "train_per_digit": 100}))
    with pytest.raises(DataError, match="test_fraction \\+ heldout_fraction must leave room"):
        load_dataset(DatasetSpec(name="digits", options={"test_fraction": 0.7, "heldout_fraction": 0.3}))
