"""Tests of disagreement (plugins/icc_disagreement) and of the zoo access it relies on:
``MeasureContext.siblings()`` and ``snapshot_state()``, and the ``reads_heldout`` flag."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import icc_disagreement
from icc_bench import Measure, MeasureContext, NotApplicable
from icc_bench.config import ArchitectureSpec, DatasetSpec, HyperParams
from icc_bench.data import ImageDataset, load_dataset
from icc_bench.measure import InvalidMeasureError
from icc_bench.models import build_model
from icc_bench.plugins import measures_table
from icc_bench.zoo import Zoo
from icc_disagreement import DisagreementSettings, disagreement, disagreement_rate, predictions

HP = HyperParams(learning_rate=0.05, batch_size=24, weight_decay=0.0, optimizer="sgd", dropout=0.0,
                 augmentation=False, width=1.0, depth=1.0)
ARCH = ArchitectureSpec(name="vgg", base_width=4)
SETTINGS = DisagreementSettings()


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    options = dict(superclasses=2, subclasses=2, train_per_subclass=6, test_per_subclass=10, resolution=8, seed=0)
    return load_dataset(DatasetSpec(name="synthetic_hierarchy", options=options))


_trained: dict[int, dict[str, torch.Tensor]] = {}


def weights(data: ImageDataset, seed: int) -> dict[str, torch.Tensor]:
    """A VGG after 40 full-batch SGD steps from the seed's initialization (computed once per seed):
    seeds differ, and so do their predictions on some test inputs."""
    if seed not in _trained:
        torch.manual_seed(seed)
        model = build_model(ARCH, HP, data.num_classes, data.input_shape)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        for _ in range(40):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
            optimizer.step()
        _trained[seed] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {k: v.clone() for k, v in _trained[seed].items()}


def put(zoo: Zoo, data: ImageDataset, model_id: str, seed: int, state: dict, hp: HyperParams = HP, **extra) -> dict:
    record = {"model_id": model_id, "seed": seed, "hyperparams": hp.model_dump(mode="json"),
              "architecture": ARCH.model_dump(mode="json"), "num_classes": data.num_classes,
              "input_shape": list(data.input_shape), **extra}
    return zoo.write_model(record, state)


def context_of(zoo: Zoo, model_id: str, data: ImageDataset) -> MeasureContext:
    model, record = zoo.load_model(model_id)
    return MeasureContext(model, data, HP, seed=0, record=record, zoo=zoo)


def test_disagreement_rate_by_hand():
    mine = torch.tensor([0, 1, 2, 1])
    others = [torch.tensor([0, 1, 1, 1]), torch.tensor([1, 1, 2, 0])]
    assert disagreement_rate(mine, others) == (1 / 4 + 2 / 4) / 2
    assert disagreement_rate(mine, [mine.clone()]) == 0.0
    with pytest.raises(ValueError, match="at least one other"):
        disagreement_rate(mine, [])


def test_a_model_and_a_copy_of_itself_never_disagree(tmp_path, data):
    zoo = Zoo(tmp_path)
    same = weights(data, 0)
    put(zoo, data, "a_s0", 0, same)
    put(zoo, data, "a_s1", 1, same)  # another seed in name only: identical weights
    assert disagreement(context_of(zoo, "a_s0", data), SETTINGS) == 0.0


def test_disagreement_is_the_mean_rate_over_every_other_seed(tmp_path, data):
    zoo = Zoo(tmp_path)
    for seed in (0, 1, 2):
        put(zoo, data, f"a_s{seed}", seed, weights(data, seed))
    ctx = context_of(zoo, "a_s1", data)
    models = {i: zoo.load_model(i)[0] for i in ("a_s0", "a_s1", "a_s2")}
    with torch.no_grad():
        pred = {i: m(data.x_test).argmax(dim=1) for i, m in models.items()}
    rates = [float((pred["a_s1"] != pred[i]).double().mean()) for i in ("a_s0", "a_s2")]
    assert max(rates) > 0  # different initializations do disagree somewhere
    assert disagreement(ctx, SETTINGS) == pytest.approx(sum(rates) / 2, abs=1e-12)
    assert disagreement(ctx, SETTINGS.model_copy(update={"max_siblings": 1})) == pytest.approx(rates[0], abs=1e-12)


def test_held_out_inputs_are_read_when_the_dataset_has_them(tmp_path, data):
    zoo = Zoo(tmp_path)
    put(zoo, data, "a_s0", 0, weights(data, 0))
    put(zoo, data, "a_s1", 1, weights(data, 1))
    heldout = torch.randn(30, *data.input_shape, generator=torch.Generator().manual_seed(5))
    with_heldout = dataclasses.replace(data, x_heldout=heldout, y_heldout=torch.zeros(30, dtype=torch.int64))
    model0, model1 = zoo.load_model("a_s0")[0], zoo.load_model("a_s1")[0]
    expected = float((predictions(model0, heldout) != predictions(model1, heldout)).double().mean())
    ctx = context_of(zoo, "a_s0", with_heldout)
    assert disagreement(ctx, SETTINGS) == pytest.approx(expected, abs=1e-12)
    assert disagreement(ctx, DisagreementSettings(split="heldout")) == pytest.approx(expected, abs=1e-12)
    # Without a held-out split: the test inputs by default, not applicable when held-out is required.
    with pytest.raises(NotApplicable, match="has no held-out split"):
        disagreement(context_of(zoo, "a_s0", data), DisagreementSettings(split="heldout"))


def test_siblings_are_the_other_seeds_of_the_same_configuration(tmp_path, data):
    zoo = Zoo(tmp_path)
    other_hp = HP.model_copy(update={"learning_rate": 0.01})
    put(zoo, data, "a_s0", 0, weights(data, 0))
    put(zoo, data, "a_s2", 2, weights(data, 2))
    put(zoo, data, "a_s1", 1, weights(data, 1))
    put(zoo, data, "b_s1", 1, weights(data, 1), hp=other_hp)  # another configuration
    put(zoo, data, "a_dup_s0", 0, weights(data, 3))  # same configuration, same seed: not a sibling
    ctx = context_of(zoo, "a_s0", data)
    siblings = ctx.siblings()
    assert list(siblings) == ["a_s1", "a_s2"]  # model-id order
    assert ctx.siblings() is siblings  # loaded once per context
    assert all(not m.training for m in siblings.values())
    assert torch.equal(siblings["a_s2"].classifier.weight, weights(data, 2)["classifier.weight"])
    with pytest.raises(NotApplicable, match="'b_s1' has no sibling"):
        context_of(zoo, "b_s1", data).siblings()


def test_without_a_zoo_or_a_sibling_disagreement_is_not_applicable(tmp_path, data):
    zoo = Zoo(tmp_path)
    put(zoo, data, "a_s0", 0, weights(data, 0))
    with pytest.raises(NotApplicable, match="has no sibling"):
        disagreement(context_of(zoo, "a_s0", data), SETTINGS)
    model, record = zoo.load_model("a_s0")
    with pytest.raises(NotApplicable, match="not loaded from a zoo"):
        disagreement(MeasureContext(model, data, HP, seed=0, record=record), SETTINGS)


def test_snapshot_state_reads_the_verified_epoch_weights(tmp_path, data):
    zoo = Zoo(tmp_path)
    initial, final = weights(data, 0), weights(data, 1)
    record = {"model_id": "a_s0", "seed": 0, "hyperparams": HP.model_dump(mode="json"),
              "architecture": ARCH.model_dump(mode="json"), "num_classes": data.num_classes,
              "input_shape": list(data.input_shape)}
    zoo.write_model(record, final, snapshots={0: initial})
    ctx = context_of(zoo, "a_s0", data)
    state = ctx.snapshot_state(0)
    assert all(torch.equal(state[k], initial[k]) for k in initial)
    with pytest.raises(NotApplicable, match=r"no weights saved at epoch 3 \(saved epochs: 0\)"):
        ctx.snapshot_state(3)


def test_reads_heldout_is_declared_checked_and_shown():
    measure = icc_disagreement.icc_bench_register_measures  # registered through the plugin below
    from icc_bench.registry import Registry

    registry: Registry[Measure] = Registry()
    measure(registry=registry)
    registered = registry.get("disagreement")
    assert registered.reads_heldout and not registered.higher_is_better
    with pytest.raises(InvalidMeasureError, match="reads_heldout must be True or False"):
        dataclasses.replace(registered, reads_heldout="yes")
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(measures_table(registry))
    assert "held-out inputs" in console.export_text()


def test_predictions_are_argmax_in_batches():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    x = torch.randn(7, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).argmax(dim=1)
    assert torch.equal(predictions(model.eval(), x, batch_size=2), expected)


def test_evaluate_hands_the_zoo_to_the_context(tmp_path, data):
    """Through ``measure_model`` (what every executor runs): the zoo's siblings and epoch-0 weights
    reach the measures; a model without an epoch-0 snapshot gets not_applicable, not an error."""
    from icc_bench.evaluate import measure_model

    spec = DatasetSpec(name="synthetic_hierarchy", options=dict(
        superclasses=2, subclasses=2, train_per_subclass=6, test_per_subclass=10, resolution=8, seed=0))
    zoo = Zoo(tmp_path)
    put(zoo, data, "a_s0", 0, weights(data, 0), dataset=spec.model_dump(mode="json"))
    record = {"model_id": "a_s1", "seed": 1, "hyperparams": HP.model_dump(mode="json"), "architecture": ARCH.model_dump(mode="json"),
              "num_classes": data.num_classes, "input_shape": list(data.input_shape), "dataset": spec.model_dump(mode="json")}
    zoo.write_model(record, weights(data, 1), snapshots={0: weights(data, 2)})
    refs = [("disagreement", DisagreementSettings().model_dump(mode="json")), ("dist_from_init", {"fold_batchnorm": True})]
    values = {v.measure: v for v in measure_model(zoo.root, "a_s1", refs, (), None, None, 0)}
    assert values["disagreement"].status == "ok" and values["dist_from_init"].status == "ok"
    assert values["disagreement"].value == pytest.approx(disagreement(context_of(zoo, "a_s1", data), SETTINGS), abs=1e-12)
    assert values["dist_from_init"].value > 0
    values = {v.measure: v for v in measure_model(zoo.root, "a_s0", refs, (), None, None, 0)}
    assert values["disagreement"].status == "ok"
    assert values["dist_from_init"].status == "not_applicable"
    assert "no weights saved at epoch 0" in values["dist_from_init"].error
