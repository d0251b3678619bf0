"""Datasets: the registry and load_dataset pipeline, CIFAR from local pickles, digits, and batching."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict

from icc_bench.config import DatasetSpec
from icc_bench.data import (
    DataError,
    DatasetOptions,
    ImageDataset,
    augment_batch,
    iterate_batches,
    list_datasets,
    load_dataset,
    register_dataset,
)
from icc_bench.data import dataset as dataset_module
from icc_bench.data.batches import apply_augmentation, draw_augmentation
from icc_bench.data.cifar import CifarOptions, build_cifar10
from icc_bench.data.digits import DigitsOptions, _stratified_split, build_digits

# --------------------------------------------------------------------------- registry and load_dataset


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that the test may add to; the real one is restored afterwards."""
    monkeypatch.setattr(dataset_module, "_REGISTRY", dict(dataset_module._REGISTRY))


class ToyOptions(DatasetOptions):
    n_per_fine: int = 6


def build_toy(options: ToyOptions, data_dir):
    """3 superclasses x 2 subclasses, ``n_per_fine`` images each; pixel values tell the image apart."""
    n_fine, n = 6, options.n_per_fine
    fine = torch.arange(n_fine).repeat_interleave(n)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((fine.numel(), 2, 5, 5), generator=generator) * torch.tensor([1.0, 10.0]).view(1, 2, 1, 1)
    fine_to_coarse = torch.tensor([0, 0, 1, 1, 2, 2])
    return ImageDataset(
        name="toy", x_train=x, y_train=fine_to_coarse[fine], x_test=x + 1.0, y_test=fine_to_coarse[fine],
        num_classes=3, fine_train=fine, fine_test=fine.clone(), fine_to_coarse=fine_to_coarse,
    )


def test_builtin_datasets_are_registered():
    assert [e.name for e in list_datasets()] == [
        "cifar10", "cifar100", "cifar100_coarse", "digits", "synthetic_hierarchy"
    ]
    assert all(e.description and "\n" not in e.description for e in list_datasets())


def test_unknown_dataset_lists_known_names_and_suggests_the_closest():
    with pytest.raises(DataError, match=r"'digit'.*cifar10, cifar100, .*synthetic_hierarchy.*Did you mean 'digits'"):
        load_dataset(DatasetSpec(name="digit"))


def test_unknown_option_is_refused_with_the_dataset_the_option_and_a_suggestion():
    with pytest.raises(DataError, match=r"'digits' has no option 'resolutoin'.*Did you mean 'resolution'"):
        load_dataset(DatasetSpec(name="digits", options={"resolutoin": 16}))


def test_invalid_option_value_names_the_option_and_the_value():
    with pytest.raises(DataError, match=r"'digits': option 'resolution' is invalid: .*8 \(got 3\)"):
        load_dataset(DatasetSpec(name="digits", options={"resolution": 3}))
    with pytest.raises(DataError, match=r"option 'train_per_class' is invalid"):
        load_dataset(DatasetSpec(name="synthetic_hierarchy", options={"train_per_class": 0}))


def test_register_dataset_refuses_duplicates_and_bad_entries(scratch_registry):
    register_dataset("toy", ToyOptions, build_toy, "a toy")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("toy", ToyOptions, build_toy, "again")

    class Plain(BaseModel):  # lacks the common options
        model_config = ConfigDict(frozen=True, extra="forbid")

    with pytest.raises(ValueError, match="must subclass"):
        register_dataset("toy2", Plain, build_toy, "x")
    with pytest.raises(ValueError, match="snake_case"):
        register_dataset("Toy-3", ToyOptions, build_toy, "x")
    with pytest.raises(ValueError, match="one non-empty line"):
        register_dataset("toy4", ToyOptions, build_toy, "")


def test_registered_dataset_is_normalized_with_training_statistics(scratch_registry):
    register_dataset("toy", ToyOptions, build_toy, "a toy")
    raw = build_toy(ToyOptions(), None)
    ds = load_dataset(DatasetSpec(name="toy"))
    for c in range(2):
        values = raw.x_train[:, c].flatten().double()
        mean, std = values.mean(), values.std(unbiased=False)  # population std, as documented
        torch.testing.assert_close(ds.x_train[:, c].double(), (raw.x_train[:, c].double() - mean) / std, rtol=0, atol=1e-5)
        torch.testing.assert_close(ds.x_test[:, c].double(), (raw.x_test[:, c].double() - mean) / std, rtol=0, atol=1e-5)
    assert ds.name == "toy" and ds.hierarchical and ds.input_shape == (2, 5, 5)
    assert ds.x_train.dtype == torch.float32


def test_constant_channel_is_centred_not_divided_by_zero(scratch_registry):
    def build_flat(options, data_dir):
        ds = build_toy(ToyOptions(), None)
        ds.x_train[:, 0] = 0.5
        return ds

    register_dataset("flat", ToyOptions, build_flat, "a constant channel")
    ds = load_dataset(DatasetSpec(name="flat"))
    assert torch.equal(ds.x_train[:, 0], torch.zeros_like(ds.x_train[:, 0]))
    assert torch.isfinite(ds.x_test).all()


def test_subsampling_is_stratified_balanced_over_subclasses_and_seeded(scratch_registry):
    register_dataset("toy", ToyOptions, build_toy, "a toy")
    spec = DatasetSpec(name="toy", options={"train_per_class": 5, "test_per_class": 2, "subsample_seed": 3})
    ds = load_dataset(spec)
    assert ds.y_train.bincount().tolist() == [5, 5, 5]
    assert ds.y_test.bincount().tolist() == [2, 2, 2]
    # 5 per superclass of 2 subclasses: 2 and 3, never 5 and 0.
    assert sorted(ds.fine_train.bincount().tolist()) == [2, 2, 2, 3, 3, 3]
    assert torch.equal(ds.fine_to_coarse[ds.fine_train], ds.y_train)
    again = load_dataset(spec)
    assert torch.equal(ds.x_train, again.x_train)
    other = load_dataset(DatasetSpec(name="toy", options={"train_per_class": 5, "subsample_seed": 4}))
    assert not torch.equal(ds.fine_train, other.fine_train) or not torch.equal(ds.x_train, other.x_train)
    # The training subsample does not depend on test_per_class (train is drawn first).
    no_test = load_dataset(DatasetSpec(name="toy", options={"train_per_class": 5, "subsample_seed": 3}))
    assert torch.equal(no_test.y_train, ds.y_train) and torch.equal(no_test.fine_train, ds.fine_train)


def test_subsampled_images_are_rows_of_the_full_set_with_their_labels():
    raw = build_toy(ToyOptions(), None)
    kept = dataset_module._subsample(raw, ToyOptions(train_per_class=4, test_per_class=3))
    for split in ("train", "test"):
        x_all, x_kept = getattr(raw, f"x_{split}").flatten(1), getattr(kept, f"x_{split}").flatten(1)
        # Each kept image is exactly one original row; find it by exact equality.
        rows = [torch.nonzero((x_all == image).all(dim=1)).flatten() for image in x_kept]
        assert all(r.numel() == 1 for r in rows)
        index = torch.cat(rows)
        assert index.unique().numel() == index.numel() and torch.equal(index, index.sort().values)
        assert torch.equal(getattr(raw, f"y_{split}")[index], getattr(kept, f"y_{split}"))
        assert torch.equal(getattr(raw, f"fine_{split}")[index], getattr(kept, f"fine_{split}"))


def test_asking_for_more_images_than_a_class_has_is_a_clear_error(scratch_registry):
    register_dataset("toy", ToyOptions, build_toy, "a toy")
    with pytest.raises(DataError, match=r"'toy': option train_per_class=20 needs 10 images of subclass \d+, which has only 6"):
        load_dataset(DatasetSpec(name="toy", options={"train_per_class": 20}))


def test_builder_output_is_checked(scratch_registry):
    def build_bad(options, data_dir):
        ds = build_toy(ToyOptions(), None)
        ds.y_train = ds.y_train + 1  # label 3 for 3 classes
        return ds

    register_dataset("bad", ToyOptions, build_bad, "broken")
    with pytest.raises(DataError, match=r"'bad': its builder returned y_train labels outside \[0, 3\)"):
        load_dataset(DatasetSpec(name="bad"))

    def build_inconsistent(options, data_dir):
        ds = build_toy(ToyOptions(), None)
        ds.fine_to_coarse = torch.tensor([0, 1, 1, 1, 2, 2])
        return ds

    register_dataset("inconsistent", ToyOptions, build_inconsistent, "broken hierarchy")
    with pytest.raises(DataError, match="superclass"):
        load_dataset(DatasetSpec(name="inconsistent"))


def test_to_moves_every_tensor_and_keeps_the_rest(scratch_registry):
    register_dataset("toy", ToyOptions, build_toy, "a toy")
    ds = load_dataset(DatasetSpec(name="toy"))
    moved = ds.to("meta")  # a device without hardware: shows every tensor field moved
    tensors = ("x_train", "y_train", "x_test", "y_test", "fine_train", "fine_test", "fine_to_coarse")
    assert all(getattr(moved, f).device.type == "meta" for f in tensors)
    assert all(getattr(ds, f).device.type == "cpu" for f in tensors)
    assert (moved.name, moved.num_classes, moved.input_shape, moved.hierarchical) == ("toy", 3, (2, 5, 5), True)


# --------------------------------------------------------------------------- CIFAR from local pickles

CIFAR10_NAMES = [f"class{i}".encode() for i in range(10)]


def _cifar_batch(labels, rng, label_key=b"labels", extra=None):
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    batch = {b"batch_label": b"testing", label_key: list(labels), b"data": data}
    batch.update(extra or {})
    return batch


def _dump(obj, path, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.fixture(params=[2, 4, 5], ids=lambda p: f"protocol{p}")
def cifar10_dir(tmp_path, request):
    """A tiny CIFAR-10 folder: one image per class in each training batch, two in the test batch."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _cifar_batch(rng.permutation(10).tolist(), rng)
    batches["test_batch"] = _cifar_batch((rng.permutation(20) % 10).tolist(), rng)
    for name, batch in batches.items():
        _dump(batch, folder / name, request.param)
    _dump({b"label_names": CIFAR10_NAMES, b"num_vis": 3072}, folder / "batches.meta", request.param)
    return tmp_path, batches


def test_cifar10_reads_the_python_layout(cifar10_dir):
    root, batches = cifar10_dir
    ds = build_cifar10(CifarOptions(), root)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    expected_x = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32) / 255.0
    torch.testing.assert_close(ds.x_train, torch.from_numpy(expected_x).float())
    assert ds.y_train.tolist() == sum((b[b"labels"] for b in train), [])
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]
    # Row layout: the first 1024 bytes are the red plane, row-major.
    assert ds.x_train[0, 0, 0, 1] == pytest.approx(train[0][b"data"][0, 1] / 255.0)
    assert ds.x_train[0, 2, 31, 31] == pytest.approx(train[0][b"data"][0, 3071] / 255.0)
    assert ds.class_names == [n.decode() for n in CIFAR10_NAMES] and not ds.hierarchical


def test_cifar10_through_load_dataset_and_the_environment_variable(cifar10_dir, monkeypatch):
    root, _ = cifar10_dir
    monkeypatch.setenv("ICC_BENCH_DATA", str(root))
    ds = load_dataset(DatasetSpec(name="cifar10", options={"train_per_class": 3}))
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.y_train.bincount().tolist() == [3] * 10
    assert ds.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_str_keys_are_accepted(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in (*[f"data_batch_{i}" for i in range(1, 6)], "test_batch"):
        _dump({"labels": list(range(10)), "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}, folder / name, 4)
    _dump({"label_names": [n.decode() for n in CIFAR10_NAMES]}, folder / "batches.meta", 4)
    ds = build_cifar10(CifarOptions(), tmp_path)
    assert ds.y_train.tolist() == list(range(10)) * 5


def test_no_data_dir_anywhere_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("ICC_BENCH_DATA", raising=False)
    with pytest.raises(DataError, match=r"'cifar10'.*--data-dir or set ICC_BENCH_DATA"):
        load_dataset(DatasetSpec(name="cifar10"))


def test_missing_folder_names_the_path_and_the_files(tmp_path):
    expected = re.escape(f"{tmp_path / 'cifar-100-python'}: no such folder") + ".*train, test, meta"
    with pytest.raises(DataError, match=expected):
        load_dataset(DatasetSpec(name="cifar100"), tmp_path)


def test_missing_file_names_the_path(cifar10_dir):
    root, _ = cifar10_dir
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing; .* must hold the CIFAR files data_batch_1"):
        build_cifar10(CifarOptions(), root)


def test_truncated_file_is_reported_not_raised_raw(cifar10_dir):
    root, _ = cifar10_dir
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR pickle"):
        build_cifar10(CifarOptions(), root)


def test_wrong_array_shape_and_label_count_are_reported(cifar10_dir):
    root, batches = cifar10_dir
    path = root / "cifar-10-batches-py" / "data_batch_2"
    bad = {**batches["data_batch_2"], b"data": np.zeros((10, 100), dtype=np.uint8)}
    _dump(bad, path)
    with pytest.raises(DataError, match=r"data_batch_2: 'data' is a uint8 array of shape \(10, 100\)"):
        build_cifar10(CifarOptions(), root)
    _dump({**batches["data_batch_2"], b"labels": [0, 1]}, path)
    with pytest.raises(DataError, match=r"data_batch_2: 'labels' holds 2 labels for 10 images"):
        build_cifar10(CifarOptions(), root)


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_that_calls_os_system_is_refused(cifar10_dir):
    root, _ = cifar10_dir
    marker = root / "pwned"
    _dump({b"data": _RunsACommand(f"touch {marker}"), b"labels": []}, root / "cifar-10-batches-py" / "data_batch_1")
    with pytest.raises(DataError, match=r"data_batch_1: refusing to unpickle the global (posix|os|nt)\.system"):
        build_cifar10(CifarOptions(), root)
    assert not marker.exists()


def _write_cifar100(root, fine_to_coarse, rng, per_fine=2):
    folder = root / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", per_fine), ("test", 1)):
        fine = np.repeat(np.arange(100), n)
        rng.shuffle(fine)
        batch = {
            b"fine_labels": fine.tolist(),
            b"coarse_labels": fine_to_coarse[fine].tolist(),
            b"data": rng.integers(0, 256, (fine.size, 3072), dtype=np.uint8),
        }
        _dump(batch, folder / split)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _dump(meta, folder / "meta")
    return folder


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(2)
    fine_to_coarse = rng.permutation(100) // 5  # 20 superclasses of 5, not in label order
    _write_cifar100(tmp_path, fine_to_coarse, rng)
    flat = load_dataset(DatasetSpec(name="cifar100"), tmp_path)
    assert flat.num_classes == 100 and not flat.hierarchical and flat.x_train.shape == (200, 3, 32, 32)
    coarse = load_dataset(DatasetSpec(name="cifar100_coarse"), tmp_path)
    assert coarse.num_classes == 20 and coarse.hierarchical
    assert coarse.fine_to_coarse.tolist() == fine_to_coarse.tolist()
    assert torch.equal(coarse.fine_train, flat.y_train) and torch.equal(coarse.x_train, flat.x_train)
    assert torch.equal(coarse.y_train, torch.from_numpy(fine_to_coarse)[coarse.fine_train])
    assert coarse.class_names == [f"coarse{i}" for i in range(20)]


def test_cifar100_labels_that_are_not_a_hierarchy_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    folder = _write_cifar100(tmp_path, np.arange(100) // 5, rng)
    with open(folder / "test", "rb") as f:
        test = pickle.load(f)
    test[b"coarse_labels"][test[b"fine_labels"].index(7)] = 19  # fine 7 is in superclass 1 elsewhere
    _dump(test, folder / "test")
    with pytest.raises(DataError, match="fine label 7 occurs with coarse labels"):
        load_dataset(DatasetSpec(name="cifar100_coarse"), tmp_path)


# --------------------------------------------------------------------------- digits

DIGIT_PAIRS = {0: 0, 6: 0, 1: 1, 7: 1, 2: 2, 5: 2, 3: 3, 8: 3, 4: 4, 9: 4}  # the documented hierarchy


def test_digits_coarse_is_the_documented_hierarchy():
    ds = load_dataset(DatasetSpec(name="digits"))
    assert ds.num_classes == 5 and ds.hierarchical and ds.input_shape == (1, 16, 16)
    assert ds.fine_to_coarse.tolist() == [DIGIT_PAIRS[d] for d in range(10)]
    assert ds.y_train.tolist() == [DIGIT_PAIRS[d] for d in ds.fine_train.tolist()]
    assert ds.y_test.tolist() == [DIGIT_PAIRS[d] for d in ds.fine_test.tolist()]
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797


def test_digits_fine_is_flat():
    ds = load_dataset(DatasetSpec(name="digits", options={"labels": "fine", "resolution": 12}))
    assert ds.num_classes == 10 and not ds.hierarchical and ds.fine_train is None
    assert ds.input_shape == (1, 12, 12)


def test_digits_split_is_a_stratified_partition_and_resolution_8_is_the_original():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = build_digits(DigitsOptions(resolution=8, labels="fine", test_fraction=0.25), None)
    train, test, heldout = _stratified_split(torch.as_tensor(bunch.target), 0.25, 0)
    assert heldout.numel() == 0 and ds.x_heldout is None
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    for d in range(10):
        n_d = int((bunch.target == d).sum())
        assert int((ds.y_test == d).sum()) == round(0.25 * n_d)
    expected = torch.as_tensor(bunch.images[train.numpy()], dtype=torch.float32) / 16.0
    torch.testing.assert_close(ds.x_train[:, 0], expected)
    assert ds.y_train.tolist() == bunch.target[train.numpy()].tolist()


# --------------------------------------------------------------------------- augmentation and batches


def _reference_augment(x, offsets, flips):
    """Per image, with numpy: reflect-pad by 4, crop at the offset, mirror if flipped."""
    out = []
    for image, (dy, dx), flip in zip(x.numpy(), offsets.tolist(), flips.tolist()):
        padded = np.pad(image, ((0, 0), (4, 4), (4, 4)), mode="reflect")
        crop = padded[:, dy : dy + image.shape[1], dx : dx + image.shape[2]]
        out.append(crop[:, :, ::-1] if flip else crop)
    return torch.from_numpy(np.stack(out).copy())


@pytest.mark.parametrize("shape", [(16, 3, 8, 8), (9, 1, 6, 11)])
def test_augment_batch_matches_a_per_image_reference(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    out = augment_batch(x, torch.Generator().manual_seed(5))
    offsets, flips = draw_augmentation(shape[0], torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    torch.testing.assert_close(out, _reference_augment(x, offsets, flips), rtol=0, atol=0)


def test_centre_offset_without_flip_is_the_identity_and_flip_mirrors():
    x = torch.randn(5, 3, 7, 7)
    centre = torch.full((5, 2), 4)
    assert torch.equal(apply_augmentation(x, centre, torch.zeros(5, dtype=torch.bool)), x)
    assert torch.equal(apply_augmentation(x, centre, torch.ones(5, dtype=torch.bool)), x.flip(-1))


def test_augmentation_draws_cover_their_ranges():
    offsets, flips = draw_augmentation(4000, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == 8 and offsets.unique().numel() == 9
    assert 0.45 < flips.float().mean() < 0.55


def test_augment_batch_is_deterministic_for_a_seed():
    x = torch.randn(32, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, augment_batch(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(2)))


def test_augment_batch_refuses_images_too_small_to_reflect():
    with pytest.raises(ValueError, match="larger than 4 pixels"):
        augment_batch(torch.zeros(2, 3, 4, 8), torch.Generator())


def test_a_generator_on_another_device_is_refused():
    x = torch.zeros(2, 3, 8, 8, device="meta")  # any non-CPU device will do; meta needs no hardware
    with pytest.raises(ValueError, match="the generator is on cpu but the tensors are on meta"):
        augment_batch(x, torch.Generator())
    with pytest.raises(ValueError, match="the generator is on cpu but the tensors are on meta"):
        next(iterate_batches(x, torch.zeros(2, device="meta"), 1, shuffle=True, generator=torch.Generator(), augment=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_batch_on_cuda_matches_the_reference():
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0)).cuda()
    out = augment_batch(x, torch.Generator(device="cuda").manual_seed(5))
    offsets, flips = draw_augmentation(16, torch.Generator(device="cuda").manual_seed(5))
    assert out.device == x.device
    torch.testing.assert_close(out.cpu(), _reference_augment(x.cpu(), offsets.cpu(), flips.cpu()), rtol=0, atol=0)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (0, 2)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_index_exactly_once(n, batch_size, shuffle):
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    y = torch.arange(n)
    batches = list(iterate_batches(x, y, batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0), augment=False))
    sizes = [len(yb) for _, yb in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    seen = torch.cat([yb for _, yb in batches]) if batches else torch.empty(0, dtype=torch.int64)
    assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(n))
    for xb, yb in batches:
        assert torch.equal(xb.view(-1), yb.float())


def test_shuffled_augmented_batches_keep_images_with_their_labels_and_are_seeded():
    # Constant images stay constant under shifts and flips, so the value still names the label.
    n = 23
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    y = torch.arange(n)

    def run(seed):
        return list(iterate_batches(x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(seed), augment=True))

    first = run(0)
    for xb, yb in first:
        assert xb.shape[1:] == (3, 8, 8)
        assert torch.equal(xb, yb.float().view(-1, 1, 1, 1).expand_as(xb))
    assert [yb.tolist() for _, yb in first] == [yb.tolist() for _, yb in run(0)]
    assert [yb.tolist() for _, yb in first] != [yb.tolist() for _, yb in run(1)]


def test_iterate_batches_validates_its_inputs():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        next(iterate_batches(x, y, 2, shuffle=True, generator=None, augment=False))
    with pytest.raises(ValueError, match="4 samples but 3 labels"):
        next(iterate_batches(x, y[:3], 2, shuffle=False, generator=None, augment=False))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(iterate_batches(x, y, 0, shuffle=False, generator=None, augment=False))
    assert len(list(iterate_batches(x, y, 3, shuffle=False, generator=None, augment=False))) == 2
