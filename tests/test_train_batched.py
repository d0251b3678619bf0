"""Batched population training against one model at a time (``icc_bench.train_batched``).

Every member of a group is checked against ``train_model`` on the same configuration on the CPU,
after 2 epochs of 3 steps, the learning rate x0.2 after the first (the tiny population: 48
training images of 8x8, batch 16): in float32, the precision that runs, and in float64, where
rounding is out of the way.

Tolerance. A grouped convolution, a batched matrix product and a per-member mean add the same
terms in another order, so bit-identity is not expected. One float32 rounding is eps = 1.2e-7
relative; the longest sums here are weight gradients over b x H x W = 16 x 64 = 1024 positions, so
a gradient may differ by up to ~1e3 eps ~ 1e-4 relative in the worst case (~ sqrt(1024) eps ~ 4e-6
typically), and a weight, which moves by the learning rate times a few such gradients, by less.
Every tensor of the state dict (weights and BatchNorm statistics) and of the snapshots must agree
within ``rtol`` of its scale (``|a - b| <= rtol (|a| + max|a|)``) and every loss within ``rtol``:
1e-4 in float32 (measured: 1e-5 at most), 1e-10 for tensors in float64 (eps 2.2e-16; measured
1e-14) but 1e-6 for its losses, which both paths compute from logits cast to float32. Accuracies
may differ by one image (a near-tie whose argmax flips).

Why so few steps: rounding differences stay near their first size until a near-tie flips a
decision (which input of a max pooling wins, the sign of a pre-activation); then two float32 runs
part by orders of magnitude, as two float32 runs of anything eventually do. Measured: the Wide
ResNet member at learning rate 0.05 below is 2e-5 from its lone run after 2 epochs of a constant
rate and 4e-3 after 3, and with this schedule already after 2, so the Wide ResNet is compared in
float64 only.

Adam, one exception. Adam divides each gradient element by its running RMS, so an element whose
true gradient is zero steps by up to the learning rate on nothing but rounding noise, which the
single model's own gradient has too (its float32 and float64 gradients there disagree
completely). In these 8x8 networks stage 4 is 1x1, so a BatchNorm shift of stage 3 reaches the
next BatchNorm as a constant over the batch and cancels: its gradient is zero. Such elements are
allowed Adam's bound, 2 x learning rate x steps, and must be few (<= 1 % of the elements; measured
0.01-0.11 %, BatchNorm shifts and the running means they feed). SGD members get no exception.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from icc_bench.config import ArchitectureSpec, HyperParams, load_spec
from icc_bench.data import ImageDataset
from icc_bench.executors import LocalExecutor
from icc_bench.population import batch_groups, expand, load_job_dataset, train_population
from icc_bench.train import TrainResult, train_model
from icc_bench.train_batched import Member, batch_key, train_batched
from icc_bench.zoo import Zoo
from tiny_population import write_tiny

#: (tensors, losses) relative tolerance per precision; see the module docstring.
RTOL = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 1e-6)}
ADAM_OUTLIERS = 0.01  # fraction of elements allowed Adam's zero-gradient bound

BASE = HyperParams(
    learning_rate=0.05, batch_size=16, weight_decay=0.0, optimizer="sgd", dropout=0.0, augmentation=False, width=1.0, depth=1.0
)
# Two learning rates, weight decay, dropout, augmentation; every one under SGD and under Adam.
VARIANTS = {
    "lr0.05": {},
    "lr0.01_wd": {"learning_rate": 0.01, "weight_decay": 1e-3},
    "dropout": {"dropout": 0.2},
    "augmentation": {"augmentation": True},
}


@contextlib.contextmanager
def precision(dtype: torch.dtype):
    """Networks built in ``dtype`` (both paths build theirs through torch's default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def in_precision(data: ImageDataset, dtype: torch.dtype) -> ImageDataset:
    images = {k: getattr(data, k).to(dtype) for k in ("x_train", "x_test", "x_heldout") if getattr(data, k) is not None}
    return dataclasses.replace(data, **images)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = load_spec(write_tiny(tmp_path_factory.mktemp("spec"), epochs=2))
    spec = spec.model_copy(update={"schedule": spec.schedule.model_copy(update={"milestones": (1,)})})
    return spec, load_job_dataset(spec.dataset, None)


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def mixed_group(tiny, request):
    """Eight members, SGD and Adam interleaved, trained as one group and each alone."""
    spec, data = tiny
    dtype = request.param
    data = in_precision(data, dtype)
    members = [
        Member(BASE.model_copy(update={**changes, "optimizer": optimizer}), seed, spec.schedule)
        for seed, (changes, optimizer) in enumerate((c, o) for c in VARIANTS.values() for o in ("sgd", "adam"))
    ]
    with precision(dtype):
        batched = dict(train_batched(spec.architecture, members, data, device="cpu"))
        alone = [train_model(spec.architecture, m.hp, m.schedule, data, seed=m.seed, device="cpu") for m in members]
    return dtype, data, members, batched, alone


def _assert_close_state(
    alone: dict[str, torch.Tensor], batched: dict[str, torch.Tensor], rtol: float, *, adam_bound: float | None
) -> float:
    """Every tensor within ``rtol`` of its scale; with ``adam_bound``, a few elements may use it
    instead. Returns the fraction of elements that did."""
    assert list(batched) == list(alone)
    outliers = elements = 0
    for name, a in alone.items():
        b = batched[name]
        assert b.shape == a.shape and b.dtype == a.dtype and b.device.type == "cpu", name
        if not a.is_floating_point():  # num_batches_tracked: the steps taken
            assert torch.equal(b, a), name
            continue
        error = (b - a).abs()
        outside = error > rtol * (a.abs() + a.abs().max())
        if adam_bound is None:
            assert not outside.any(), f"{name}: max |difference| {error.max():.3g}, scale {a.abs().max():.3g}"
        else:
            assert error.max() <= adam_bound, f"{name}: max |difference| {error.max():.3g} > Adam's bound {adam_bound:.3g}"
        outliers += int(outside.sum())
        elements += a.numel()
    return outliers / elements


def _assert_same_training(alone: TrainResult, batched: TrainResult, data, *, adam_bound: float | None = None) -> None:
    rtol, loss_rtol = RTOL[data.x_train.dtype]
    n_train, n_test = len(data.y_train), len(data.y_test)
    assert batched.epochs_run == alone.epochs_run and batched.reached_loss_stop == alone.reached_loss_stop
    assert batched.layers == alone.layers
    assert [s.epoch for s in batched.curve] == [s.epoch for s in alone.curve]
    for a, b in zip(alone.curve, batched.curve):
        assert b.learning_rate == a.learning_rate
        assert b.train_loss == pytest.approx(a.train_loss, rel=loss_rtol)
        assert abs(b.train_accuracy - a.train_accuracy) <= 1 / n_train + 1e-12
        assert abs(b.test_accuracy - a.test_accuracy) <= 1 / n_test + 1e-12
    assert batched.train_loss == pytest.approx(alone.train_loss, rel=loss_rtol)
    assert batched.test_loss == pytest.approx(alone.test_loss, rel=loss_rtol)
    assert abs(batched.test_accuracy - alone.test_accuracy) <= 1 / n_test + 1e-12
    assert batched.predictions.keys() == alone.predictions.keys()
    for split, (predicted, labels) in alone.predictions.items():
        assert torch.equal(batched.predictions[split][1], labels)
        assert int((batched.predictions[split][0] != predicted).sum()) <= 1
    outliers = _assert_close_state(alone.state_dict, batched.state_dict, rtol, adam_bound=adam_bound)
    assert outliers <= (ADAM_OUTLIERS if adam_bound is not None else 0)
    assert batched.snapshots.keys() == alone.snapshots.keys() == {0, 1}  # the initialization and the spec's save_epochs
    for epoch, snapshot in alone.snapshots.items():
        _assert_close_state(snapshot, batched.snapshots[epoch], rtol, adam_bound=adam_bound)


def _adam_bound(hp: HyperParams, result: TrainResult) -> float:
    steps = next(v for k, v in result.state_dict.items() if k.endswith("num_batches_tracked")).item()
    return 2 * hp.learning_rate / 100 * steps


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sgd_member_matches_training_alone(mixed_group, variant):
    dtype, data, members, batched, alone = mixed_group
    i = 2 * list(VARIANTS).index(variant)
    assert members[i].hp.optimizer == "sgd" and batched[i].state_dict["classifier.weight"].dtype == dtype
    _assert_same_training(alone[i], batched[i], data)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_adam_member_matches_training_alone(mixed_group, variant):
    dtype, data, members, batched, alone = mixed_group
    i = 2 * list(VARIANTS).index(variant) + 1
    assert members[i].hp.optimizer == "adam" and batched[i].state_dict["classifier.weight"].dtype == dtype
    _assert_same_training(alone[i], batched[i], data, adam_bound=_adam_bound(members[i].hp, alone[i]))


def test_wide_resnet_members_match_training_alone(tiny):
    """The other batchable family: residual blocks, 1x1 projection shortcuts, dropout inside
    blocks; in float64 (see the module docstring)."""
    spec, data = tiny
    data = in_precision(data, torch.float64)
    wrn = ArchitectureSpec(name="wrn", base_width=4)
    members = [
        Member(BASE, 0, spec.schedule),
        Member(BASE.model_copy(update={"learning_rate": 0.01, "dropout": 0.2, "augmentation": True}), 1, spec.schedule),
        Member(BASE.model_copy(update={"optimizer": "adam"}), 2, spec.schedule),
    ]
    with precision(torch.float64):
        for i, result in train_batched(wrn, members, data, device="cpu"):
            m = members[i]
            alone = train_model(wrn, m.hp, m.schedule, data, seed=m.seed, device="cpu")
            _assert_same_training(alone, result, data, adam_bound=_adam_bound(m.hp, alone) if m.hp.optimizer == "adam" else None)


def test_members_really_differ(mixed_group):
    """The comparison above is not vacuous: members of one group end far apart from each other."""
    *_, batched, _ = mixed_group
    first = batched[0].state_dict["stage1.conv1.conv.weight"]
    for i in range(1, len(batched)):
        assert (batched[i].state_dict["stage1.conv1.conv.weight"] - first).abs().max() > 1e-2


def test_a_member_that_stops_early_is_handed_back_then_and_stops_changing(tiny):
    spec, data = tiny
    stops = spec.schedule.model_copy(update={"stop_train_loss": 100.0})  # every epoch's loss is below: done after 1
    events: list[tuple[str, int, int]] = []
    members = [
        Member(BASE, 0, spec.schedule, on_epoch=lambda s: events.append(("epoch", 0, s.epoch))),
        Member(BASE.model_copy(update={"optimizer": "adam"}), 1, stops, on_epoch=lambda s: events.append(("epoch", 1, s.epoch))),
    ]
    results = {}
    for i, result in train_batched(spec.architecture, members, data, device="cpu"):
        events.append(("done", i, result.epochs_run))
        results[i] = result
    assert events == [
        ("epoch", 0, 1), ("epoch", 1, 1), ("done", 1, 1),  # handed back at once, before member 0 trains on
        ("epoch", 0, 2), ("done", 0, 2),
    ]
    stopped = results[1]
    assert stopped.reached_loss_stop and stopped.epochs_run == 1 and not results[0].reached_loss_stop
    # Its weights are those after epoch 1 (its snapshot), bit for bit, and those of training it alone.
    assert all(torch.equal(stopped.state_dict[k], v) for k, v in stopped.snapshots[1].items())
    alone = train_model(spec.architecture, members[1].hp, stops, data, seed=1, device="cpu")
    assert alone.epochs_run == 1
    _assert_same_training(alone, stopped, data, adam_bound=_adam_bound(members[1].hp, alone))
    # The member that trained on alone in the group is as if it had never had company.
    _assert_same_training(train_model(spec.architecture, BASE, spec.schedule, data, seed=0, device="cpu"), results[0], data)


def test_members_that_cannot_share_a_program_are_refused(tiny):
    spec, data = tiny
    vgg = spec.architecture
    assert batch_key(vgg, BASE) != batch_key(vgg, BASE.model_copy(update={"batch_size": 48}))
    assert batch_key(vgg, BASE) != batch_key(vgg, BASE.model_copy(update={"width": 1.5}))
    assert batch_key(vgg, BASE) == batch_key(vgg, BASE.model_copy(update={"optimizer": "adam", "dropout": 0.2, "learning_rate": 0.1}))
    assert batch_key(ArchitectureSpec(name="timm:resnet18"), BASE) is None
    members = [Member(BASE, 0, spec.schedule), Member(BASE.model_copy(update={"batch_size": 48}), 0, spec.schedule)]
    with pytest.raises(ValueError, match="batch size"):
        next(train_batched(vgg, members, data, device="cpu"))
    with pytest.raises(ValueError, match="one model at a time"):
        next(train_batched(ArchitectureSpec(name="timm:resnet18"), members[:1], data, device="cpu"))


def test_batch_groups_share_a_key_and_split_evenly(tiny):
    spec, _ = tiny
    jobs = expand(spec)  # 7 jobs: 5 at (width 1, batch 16), one at batch 48, one at width 1.5
    groups = batch_groups(jobs, 2)
    assert sorted(j.model_id for g in groups for j in g) == sorted(j.model_id for j in jobs)
    assert sorted(len(g) for g in groups) == [1, 1, 1, 2, 2]
    for group in groups:
        assert len({batch_key(j.architecture, j.hyperparams) for j in group}) == 1
    assert [len(g) for g in batch_groups(jobs, 16)] == [5, 1, 1]
    assert [len(g) for g in batch_groups(jobs, 1)] == [1] * 7


def test_batched_population_writes_every_record_as_one_at_a_time_does(tiny, tmp_path):
    spec, data = tiny
    one = train_population(spec, tmp_path / "one", device="cpu", executor=LocalExecutor(batch_models=1))
    batched = train_population(spec, tmp_path / "batched", device="cpu", executor=LocalExecutor(batch_models=3))
    assert batched.trained == one.trained == len(expand(spec)) and batched.remaining == 0
    zoo = Zoo(tmp_path / "batched" / spec.name)
    for a, b in zip(one.records, batched.records):
        assert b["model_id"] == a["model_id"] and list(b) == list(a)
        assert [list(e) for e in b["curve"]] == [list(e) for e in a["curve"]]
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=RTOL[torch.float32][1])
        assert b["predictions"]["splits"] == a["predictions"]["splits"]
        zoo.verify(b["model_id"])
        zoo.verify(b["model_id"], epoch=1)
    model, record = zoo.load_model(batched.records[0]["model_id"])
    from icc_bench.train import evaluate

    assert evaluate(model, data.x_test, data.y_test)[1] == pytest.approx(record["test_accuracy"])


def test_batch_models_option(tmp_path):
    from icc_bench.cli import main

    spec = write_tiny(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "--batch-models", "0"])
    assert main(["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "--batch-models", "4", "--executor", "ray"]) == 2
    assert not (tmp_path / "runs" / "tiny" / "models").exists()


def test_a_sparsely_tested_curve_trains_the_same_weights(tiny):
    """``Schedule.test_every = 0`` measures the curve's test accuracy at the snapshots only: the
    other epochs read None, and the weights are exactly those of a curve tested every epoch (the
    test pass runs in eval mode and draws no random numbers), alone and batched alike."""
    spec, data = tiny
    every = spec.schedule.model_copy(update={"save_epochs": (1,), "test_every": 1})
    sparse = every.model_copy(update={"test_every": 0})
    hp = BASE.model_copy(update={"dropout": 0.2, "augmentation": True})
    full = train_model(spec.architecture, hp, every, data, seed=3, device="cpu")
    alone = train_model(spec.architecture, hp, sparse, data, seed=3, device="cpu")
    (_, batched), = train_batched(spec.architecture, [Member(hp, 3, sparse)], data, device="cpu")
    assert [s.test_accuracy is None for s in full.curve] == [False, False]
    for result in (alone, batched):
        assert [s.test_accuracy is None for s in result.curve] == [False, True]  # epoch 1 is a snapshot
        assert result.curve[0].test_accuracy == pytest.approx(full.curve[0].test_accuracy, abs=1 / len(data.y_test))
        assert result.test_accuracy == pytest.approx(full.test_accuracy, abs=1 / len(data.y_test))
    assert all(torch.equal(full.state_dict[k], v) for k, v in alone.state_dict.items())


def test_auto_batches_narrow_networks_on_the_cpu_and_every_network_on_cuda(tiny, monkeypatch):
    """``--batch-models auto``: on the CPU a group only where batching measured faster (a first
    stage of at most 8 channels), on CUDA every batchable network; the rest one at a time."""
    import icc_bench.population as population
    from icc_bench.train_batched import auto_batches

    spec, _ = tiny  # VGG base width 4: widths x1 (4 channels) and x1.5 (6)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    narrow, wide = spec.architecture, spec.architecture.model_copy(update={"base_width": 16})
    assert auto_batches(narrow, BASE.model_copy(update={"width": 2.0}), cpu)  # 8 channels
    assert not auto_batches(narrow, BASE.model_copy(update={"width": 3.0}), cpu)  # 12
    assert not auto_batches(wide, BASE, cpu) and auto_batches(wide, BASE, cuda)
    assert not auto_batches(narrow.model_copy(update={"name": "timm:resnet18"}), BASE, cuda)  # not batchable at all

    sizes = []
    monkeypatch.setattr(population, "run_job", lambda job, **kw: sizes.append(1))
    monkeypatch.setattr(population, "run_batch", lambda jobs, **kw: sizes.append(len(jobs)) or iter(()))
    jobs = expand(spec)
    wide_jobs = [dataclasses.replace(job, architecture=wide) for job in jobs]
    list(population.train_in_process(jobs + wide_jobs, data_dir=None, device="cpu", batch_models="auto"))
    assert sorted(sizes, reverse=True) == sorted([len(g) for g in batch_groups(jobs, 16)] + [1] * len(wide_jobs), reverse=True)
