"""The measure contract, checked on every registered measure, and the machinery that enforces it.

The parametrized tests run on whatever the built-in plugins, the example plugin
(``examples/icc_example_measure``) and the plugins named in ``ICC_BENCH_CONTRACT_PLUGINS``
(comma-separated ``--plugin`` values) register: a new measure is checked without a new test.
Each measure runs on one tiny trained VGG with the data it was trained on, once with its label
hierarchy and once without. The model comes from a two-model zoo, so that measures reading the
zoo (its epoch-0 weights, another seed of its configuration) are checked too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from icc_bench import Measure, MeasureContext, NotApplicable, compute_measure
from icc_bench.config import ArchitectureSpec, DatasetSpec, HyperParams
from icc_bench.data import ImageDataset, load_dataset
from icc_bench.models import build_model
from icc_bench.plugins import BUILTIN_PLUGINS, PluginWarning, load_plugins
from icc_bench.zoo import Zoo

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "icc_example_measure" / "icc_example_measure"
CONTRACT_ENV = "ICC_BENCH_CONTRACT_PLUGINS"

HYPERPARAMS = HyperParams(
    learning_rate=0.05, batch_size=24, weight_decay=0.0, optimizer="sgd",
    dropout=0.0, augmentation=False, width=1.0, depth=1.0,
)


def _contract_plugins():
    extra = [str(EXAMPLE_PLUGIN)] + [p.strip() for p in os.environ.get(CONTRACT_ENV, "").split(",") if p.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # test_plugins_load_without_failures reports them
        return load_plugins(extra, entry_points=False)


# The contract holds for any settings. These measures are slow at their defaults on a tiny model
# (a 20-step bisection of 3 restarts x 20 ascent steps: 1,200 gradient steps per value), so they
# run here with fewer steps; the overrides go through with_settings, so a renamed setting fails.
CONTRACT_SETTINGS: dict[str, dict[str, int]] = {
    "inv_alpha_prime": {"max_steps": 6, "ascent_steps": 3, "restarts": 1},
    "inv_alpha_dprime": {"max_steps": 6, "ascent_steps": 3, "restarts": 1},
}

PLUGINS = _contract_plugins()
MEASURES = [m.with_settings(**CONTRACT_SETTINGS.get(m.name, {})) for m in PLUGINS.measures]
by_name = pytest.mark.parametrize("measure", MEASURES, ids=[m.name for m in MEASURES])
on_both_datasets = pytest.mark.parametrize("hierarchical", [False, True], ids=["flat", "hierarchical"])


# -- the tiny model and its data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def hierarchical_data() -> ImageDataset:
    """2 superclasses x 2 subclasses x 6 training images of 8 x 8."""
    options = dict(superclasses=2, subclasses=2, train_per_subclass=6, test_per_subclass=3, resolution=8, seed=0)
    return load_dataset(DatasetSpec(name="synthetic_hierarchy", options=options))


@pytest.fixture(scope="module")
def flat_data(hierarchical_data) -> ImageDataset:
    """The same images and trained-on labels, without the hierarchy."""
    return dataclasses.replace(
        hierarchical_data, name="synthetic_flat", fine_train=None, fine_test=None, fine_to_coarse=None
    )


def train_tiny(dataset: ImageDataset, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(initial, trained) states of a width-4 VGG after 40 full-batch SGD steps: trained enough for
    its BatchNorm statistics and accuracies to be those of a real model, small enough to take a second."""
    torch.manual_seed(seed)
    model = new_model(dataset)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(dataset.x_train), dataset.y_train)
        loss.backward()
        optimizer.step()
    return initial, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained_state(hierarchical_data) -> dict[str, torch.Tensor]:
    return train_tiny(hierarchical_data, seed=0)[1]


@pytest.fixture(scope="module")
def zoo(hierarchical_data, tmp_path_factory) -> Zoo:
    """The tiny model (``tiny_s0``, with its epoch-0 weights) and another seed of its configuration."""
    zoo = Zoo(tmp_path_factory.mktemp("contract_zoo"))
    for seed in (0, 1):
        initial, trained = train_tiny(hierarchical_data, seed)
        record = {
            "model_id": f"tiny_s{seed}", "seed": seed, "hyperparams": HYPERPARAMS.model_dump(mode="json"),
            "architecture": ARCHITECTURE.model_dump(mode="json"), "num_classes": hierarchical_data.num_classes,
            "input_shape": list(hierarchical_data.input_shape),
        }
        zoo.write_model(record, trained, snapshots={0: initial})
    return zoo


ARCHITECTURE = ArchitectureSpec(name="vgg", base_width=4)


def new_model(dataset: ImageDataset) -> torch.nn.Module:
    return build_model(ARCHITECTURE, HYPERPARAMS, dataset.num_classes, dataset.input_shape)


@pytest.fixture(scope="module")
def make_context(hierarchical_data, flat_data, trained_state, zoo):
    """``make_context(hierarchical, permutation=None)``: a fresh model and context each call."""

    def make(hierarchical: bool, permutation: torch.Tensor | None = None) -> MeasureContext:
        dataset = hierarchical_data if hierarchical else flat_data
        if permutation is not None:
            dataset = permuted(dataset, permutation)
        model = new_model(dataset)
        model.load_state_dict(trained_state)
        return MeasureContext(model, dataset, HYPERPARAMS, seed=0, record=zoo.read_record("tiny_s0"), zoo=zoo)

    return make


def permuted(dataset: ImageDataset, permutation: torch.Tensor) -> ImageDataset:
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[permutation],
        y_train=dataset.y_train[permutation],
        fine_train=None if dataset.fine_train is None else dataset.fine_train[permutation],
    )


_values: dict[tuple[str, bool], float] = {}


def value_of(measure: Measure, hierarchical: bool, make_context) -> float:
    """The measure on the unpermuted tiny model, computed once per module; skips when not applicable."""
    ctx = make_context(hierarchical)
    reason = measure.applicability_reason(ctx)
    if reason is not None:
        with pytest.raises(NotApplicable, match=f"measure '{measure.name}' needs subclass labels"):
            compute_measure(measure, ctx)
        pytest.skip(f"not applicable: {reason}")
    key = (measure.name, hierarchical)
    if key not in _values:
        _values[key] = compute_measure(measure, ctx)
    return _values[key]


# -- the contract, on every registered measure --------------------------------------------------


def test_plugins_load_without_failures():
    """Only a built-in that does not exist yet may be missing; everything else must load."""
    unexpected = [
        (name, message) for name, message in PLUGINS.failures
        if not (name in BUILTIN_PLUGINS and "neither installed nor importable" in message)
    ]
    assert unexpected == []
    assert "weight_norm" in PLUGINS.measures  # the example plugin, at least, is always there


@by_name
def test_declares_what_the_harness_needs(measure):
    assert measure.description.strip(), "a one-line description for `icc-bench measures`"
    assert measure.plugin is not None
    assert measure.with_settings().settings_hash == measure.settings_hash


@by_name
@on_both_datasets
def test_returns_a_finite_python_float(measure, hierarchical, make_context):
    value = value_of(measure, hierarchical, make_context)
    assert type(value) is float
    assert math.isfinite(value)


@by_name
@on_both_datasets
def test_same_seed_gives_the_same_value_and_leaves_the_model_untouched(measure, hierarchical, make_context):
    expected = value_of(measure, hierarchical, make_context)
    ctx = make_context(hierarchical)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    assert compute_measure(measure, ctx) == expected
    after = ctx.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [], "weights and buffers are bit-identical after the measure"
    assert not ctx.model.training, "the model is left in eval mode"


@by_name
@on_both_datasets
def test_invariant_to_the_order_of_the_training_samples(measure, hierarchical, make_context):
    expected = value_of(measure, hierarchical, make_context)
    n = len(make_context(hierarchical).dataset.y_train)
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    value = compute_measure(measure, make_context(hierarchical, permutation))
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-7)


# -- compute_measure: the conversions it makes and refuses --------------------------------------


def returning(value) -> Measure:
    from pydantic import BaseModel, ConfigDict

    class NoSettings(BaseModel):
        model_config = ConfigDict(frozen=True)

    return Measure(name="returns", family="test", higher_is_better=True, needs_hierarchy=False,
                   fn=lambda ctx, settings: value, settings=NoSettings())


@pytest.mark.parametrize(
    "value",
    [1.5, np.float64(1.5), np.float32(1.5), np.array(1.5), torch.tensor(1.5), torch.tensor(1.5, dtype=torch.float64),
     torch.tensor(1.5, requires_grad=True) * 1],
    ids=["float", "np.float64", "np.float32", "np-0d", "tensor-0d", "tensor-0d-f64", "tensor-grad"],
)
def test_real_scalars_become_python_floats(value, make_context):
    result = compute_measure(returning(value), make_context(False))
    assert type(result) is float and result == 1.5


@pytest.mark.parametrize(
    "value, described",
    [
        (1, "int 1"),
        (True, "bool True"),
        (None, "NoneType None"),
        ("1.5", "str '1.5'"),
        (torch.tensor([1.5]), "Tensor of shape (1,)"),
        (np.array([1.0, 2.0]), "ndarray of shape (2,)"),
        (torch.tensor(2), "0-d Tensor holding int 2"),
        (np.int64(2), "0-d int64 holding int 2"),
    ],
)
def test_anything_else_is_a_type_error_naming_the_measure(value, described, make_context):
    with pytest.raises(TypeError, match=f"^measure 'returns' returned a {re.escape(described)}"):
        compute_measure(returning(value), make_context(False))


def test_hierarchy_measure_is_not_applicable_on_flat_data_and_is_not_called(make_context):
    def needs_subclasses(ctx, settings):
        assert ctx.probe_fine_labels is not None
        return float(len(torch.unique(ctx.probe_fine_labels)))

    measure = dataclasses.replace(returning(0.0), name="subclasses", needs_hierarchy=True, fn=needs_subclasses)
    flat = make_context(False)
    assert not measure.applicable(flat)
    with pytest.raises(NotApplicable) as raised:
        compute_measure(measure, flat)
    assert str(raised.value) == (
        "measure 'subclasses' needs subclass labels (a label hierarchy) and dataset 'synthetic_flat' has none"
    )
    hierarchical = make_context(True)
    assert measure.applicable(hierarchical) and measure.applicability_reason(hierarchical) is None
    assert compute_measure(measure, hierarchical) == 4.0


# -- MeasureContext ----------------------------------------------------------------------------


def test_context_puts_the_model_in_eval_mode_and_exposes_the_labels(make_context, hierarchical_data):
    ctx = make_context(True)
    assert not ctx.model.training and ctx.device == torch.device("cpu")
    n = len(hierarchical_data.y_train)
    assert torch.equal(ctx.probe_indices, torch.arange(n))  # probe_samples=None: the whole training set
    assert torch.equal(ctx.probe_labels, hierarchical_data.y_train)
    assert torch.equal(ctx.probe_fine_labels, hierarchical_data.fine_train)
    assert torch.equal(ctx.fine_to_coarse, torch.tensor([0, 0, 1, 1]))
    assert ctx.record["model_id"] == "tiny_s0" and ctx.seed == 0
    flat = make_context(False)
    assert flat.probe_fine_labels is None and flat.fine_to_coarse is None


def test_generator_is_fresh_seeded_and_on_the_cpu(make_context):
    ctx = make_context(False)
    first, second = ctx.generator(), ctx.generator()
    assert first.device == torch.device("cpu")
    assert torch.equal(torch.rand(5, generator=first), torch.rand(5, generator=second))
    reference = torch.Generator().manual_seed(0)
    assert torch.equal(torch.rand(5, generator=ctx.generator()), torch.rand(5, generator=reference))


def test_representations_are_computed_once_per_probe_size(make_context, hierarchical_data, monkeypatch):
    import icc_bench.probe

    calls = []
    real = icc_bench.probe.compute_representations

    def counting(model, x, **kwargs):
        calls.append(len(x))
        return real(model, x, **kwargs)

    monkeypatch.setattr(icc_bench.probe, "compute_representations", counting)
    ctx = make_context(True)
    assert calls == []  # nothing is computed until a measure asks
    n = len(hierarchical_data.y_train)
    assert ctx.preactivations[0].shape[0] == n and ctx.activations is ctx.representations.activations
    assert ctx.representations is ctx.representations
    assert all(torch.equal(a, torch.relu(z)) for a, z in zip(ctx.activations, ctx.preactivations))

    small = ctx.probe_for(2)
    assert ctx.representations_for(2) is ctx.representations_for(2) is small.representations
    assert calls == [n, 8]  # 2 samples of each of the 4 subclasses
    assert sorted(torch.bincount(small.fine_labels).tolist()) == [2, 2, 2, 2]
    assert torch.equal(small.labels, hierarchical_data.y_train[small.indices])
    assert torch.equal(small.fine_labels, hierarchical_data.fine_train[small.indices])
    assert torch.allclose(ctx.representations_for(2).preactivations[0], ctx.preactivations[0][small.indices], atol=1e-6)
    assert ctx.probe_for(None) is ctx.probe
