"""What the PGDL winners' measures (plugins/icc_pgdl) mean, on constructed networks and data.

Each measure is run where its answer is known without computing it: separated classes against
mixed ones (Davies-Bouldin), convex class regions against a region with a hole (label-wise
mixup), a network that ignores its input against one that reads left from right (augmentation
robustness), representations whose neighbours share labels against entangled ones (label
variation). Also: the registration, the product, and the representations the measures read.
"""

from __future__ import annotations
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import icc_pgdl
from icc_bench import MeasureContext, compute_measure
from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.data import ImageDataset
from icc_bench.models import build_model
from icc_pgdl.davies_bouldin import davies_bouldin, first_layer_davies_bouldin
from icc_pgdl.forward import first_convolution_output, last_weight_layer_inputs
from icc_pgdl.label_variation import knn_cosine_graph, label_variation, last_layers_variation_rate
from icc_pgdl.mixup import labelwise_mixup
from icc_pgdl.robustness import PENALTIES, augment_robustness
from icc_pgdl.settings import (
    AugmentRobustnessSettings,
    DaviesBouldinSettings,
    LabelVariationSettings,
    LabelwiseMixupSettings,
)

HP = HyperParams(learning_rate=0.05, weight_decay=0.0, batch_size=32, optimizer="sgd", dropout=0.0,
                 augmentation=False, width=1.0, depth=1.0)


def dataset(x: torch.Tensor, y: torch.Tensor) -> ImageDataset:
    return ImageDataset(name="constructed", x_train=x, y_train=y, x_test=x, y_test=y, num_classes=int(y.max()) + 1)


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# -- Davies-Bouldin -----------------------------------------------------------------------------


@pytest.mark.parametrize("pair_reduction", ["mean_all", "max"])
def test_separated_clusters_score_lower_than_mixed_ones(pair_reduction):
    g = generator()
    labels = torch.arange(120) % 4
    noise = torch.randn(120, 16, generator=g)
    separated = noise + 8 * torch.nn.functional.one_hot(labels, 16)  # means 11 apart, mean spread 4
    mixed = noise + 0.1 * torch.nn.functional.one_hot(labels, 16)  # means 0.14 apart, the same spread
    assert davies_bouldin(mixed, labels, pair_reduction=pair_reduction) > 5 * davies_bouldin(separated, labels, pair_reduction=pair_reduction)


def test_their_mean_reading_is_at_most_the_textbook_index():
    g = generator()
    for _ in range(5):
        x, labels = torch.randn(50, 4, generator=g), torch.randint(0, 5, (50,), generator=g)
        assert davies_bouldin(x, labels) <= davies_bouldin(x, labels, pair_reduction="max") * 4 / 5 + 1e-12


def test_first_layer_index_is_lower_when_the_labels_follow_the_images():
    # Dark images against bright ones: any first convolution keeps them apart; the same images
    # under labels drawn at random are two overlapping clusters.
    g = generator()
    y = torch.arange(64) % 2
    x = (2.0 * y - 1).view(-1, 1, 1, 1) + 0.3 * torch.randn(64, 3, 8, 8, generator=g)
    torch.manual_seed(0)
    model = build_model(ArchitectureSpec(name="vgg", base_width=4), HP, 2, (3, 8, 8)).eval()
    settings = DaviesBouldinSettings(windows=4, window_size=32)
    by_content = first_layer_davies_bouldin(model, x, y, settings, generator())
    at_random = first_layer_davies_bouldin(model, x, y[torch.randperm(64, generator=g)], settings, generator())
    assert by_content < at_random / 3


# -- label-wise mixup ---------------------------------------------------------------------------


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Radial(nn.Module):
    """Class 1 inside the ball of radius 1, class 0 outside: a class region with a hole."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        radius = x.flatten(1).norm(dim=1)
        return torch.stack([radius - 1, 1 - radius], dim=1)


def test_mixup_error_is_zero_for_convex_class_regions():
    # A linear classifier's class regions are convex: the mixture of two images of a class stays
    # in it. Label the images by the classifier itself, so that every training image is right.
    g = generator()
    model = Linear(torch.randn(3, 12, generator=g))
    x = torch.randn(90, 3, 2, 2, generator=g)
    y = model(x).argmax(1)
    assert len(torch.unique(y)) == 3
    for loss in ("error", "cross_entropy"):
        value = labelwise_mixup(model, x, y, LabelwiseMixupSettings(mixup_loss=loss), generator())
        assert value == 0.0 if loss == "error" else value > 0.0


def test_mixup_error_finds_the_hole():
    v = torch.ones(1, 2, 2) * 2  # norm 4: class 0
    x = torch.stack([v, -v, 0.1 * v, -0.1 * v])  # class 0 on both sides of the ball, class 1 inside
    y = torch.tensor([0, 0, 1, 1])
    model = Radial()
    assert torch.equal(model(x).argmax(1), y)  # every training image is right
    # Class 0's one pair mixes to the origin, inside the ball: error 1; class 1's stays inside: 0.
    assert labelwise_mixup(model, x, y, LabelwiseMixupSettings(), generator()) == 0.5


# -- augmentation robustness --------------------------------------------------------------------


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.3, -1.0, 2.0]))

    def forward(self, x):
        return self.logits.expand(x.shape[0], 3)


class LeftOrRight(nn.Module):
    """Class 0 when the left half of a one-channel image is brighter, class 1 otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        half = x.shape[-1] // 2
        difference = x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3))
        return self.scale * torch.stack([difference, -difference], dim=1)


def test_a_network_that_ignores_its_input_is_perfectly_robust():
    x = torch.randn(100, 3, 16, 16, generator=generator())
    assert augment_robustness(Constant(), x, torch.zeros(100, dtype=torch.int64), AugmentRobustnessSettings(), generator()) == 0.0


def test_a_network_that_reads_left_from_right_pays_the_flip_penalties():
    g = generator()
    x = 0.1 * torch.randn(40, 1, 16, 16, generator=g)
    x[..., :8] += torch.where(torch.arange(40) % 2 == 0, 1.0, -1.0).view(-1, 1, 1, 1)
    labels = torch.zeros(40, dtype=torch.int64)
    value = augment_robustness(LeftOrRight(), x, labels, AugmentRobustnessSettings(), generator())
    # The flip, and the flip with saturation (the identity on one channel), change every class.
    assert value >= PENALTIES[0] + PENALTIES[5]
    # Every image's augmentations are drawn before batching: the batch size is a memory knob only.
    batched = augment_robustness(LeftOrRight(), x, labels, AugmentRobustnessSettings(batch_size=7), generator())
    assert batched == pytest.approx(value, rel=1e-12)


# -- label variation ----------------------------------------------------------------------------


def test_label_variation_is_zero_when_neighbours_share_labels():
    g = generator()
    labels = torch.arange(60) % 3
    # Each class in its own block of non-negative coordinates: orthogonal across classes.
    blocks = torch.nn.functional.one_hot(labels, 3).repeat_interleave(4, dim=1).to(torch.float32)
    separated = blocks * torch.rand(60, 12, generator=g)
    assert label_variation(knn_cosine_graph(separated, k=20), labels) == 0.0
    assert label_variation(knn_cosine_graph(torch.rand(60, 12, generator=g), k=20), labels) > 0.0


def test_variation_rate_is_zero_through_layers_that_keep_the_classes_apart_and_not_through_one_that_mixes():
    g = generator()
    y = torch.arange(60) % 2
    blocks = torch.nn.functional.one_hot(y, 2).repeat_interleave(4, dim=1).to(torch.float32)
    x = (blocks * (0.5 + torch.rand(60, 8, generator=g))).view(60, 1, 2, 4)
    sums = torch.nn.functional.one_hot(torch.arange(8) // 4, 2).T.to(torch.float32)  # (2, 8): logit c sums block c

    def network(hidden: torch.Tensor) -> nn.Module:
        first, second = nn.Linear(8, 8, bias=False), nn.Linear(8, 2, bias=False)
        first.weight.data, second.weight.data = hidden, sums
        return nn.Sequential(nn.Flatten(), first, nn.ReLU(), second)

    settings = LabelVariationSettings(k=5, batch_size=30)
    assert last_layers_variation_rate(network(torch.eye(8)), x, y, settings, generator()) == 0.0
    mixing = torch.ones(8, 8)  # every hidden unit sums all inputs: one direction for every image
    assert last_layers_variation_rate(network(mixing), x, y, settings, generator()) > 0.0


# -- what the measures read ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_and_images():
    torch.manual_seed(0)
    model = build_model(ArchitectureSpec(name="vgg", base_width=4), HP, 3, (3, 8, 8)).eval()
    return model, torch.randn(6, 3, 8, 8, generator=generator())


def test_first_convolution_output_is_the_stem_convolution(vgg_and_images):
    model, x = vgg_and_images
    with torch.no_grad():
        expected = model.stage1.conv1.conv(x)
    assert torch.equal(first_convolution_output(model, x, batch_size=4), expected)


def test_last_weight_layer_inputs_are_the_last_convolution_and_classifier_inputs(vgg_and_images):
    model, x = vgg_and_images
    with torch.no_grad():
        h = x
        for name in ("stage1", "pool1", "stage2", "pool2", "stage3", "pool3"):
            h = getattr(model, name)(h)
        before_last_conv = model.stage4.conv1(h)
        pooled = model.flatten(model.global_pool(model.stage4.conv2(before_last_conv)))
        output = model(x)
    inputs, out = last_weight_layer_inputs(model, x, 2)
    assert [t.shape for t in inputs] == [before_last_conv.shape, pooled.shape]
    assert torch.equal(inputs[0], before_last_conv) and torch.equal(inputs[1], pooled) and torch.equal(out, output)


# -- registration and the product ---------------------------------------------------------------


def test_five_complexity_measures_in_one_family():
    collected = {}
    icc_pgdl.icc_bench_register_measures(registry=SimpleNamespace(add=lambda m: collected.setdefault(m.name, m)))
    assert sorted(collected) == ["pgdl_augment_robustness", "pgdl_dbi", "pgdl_dbi_mixup", "pgdl_label_variation", "pgdl_mixup"]
    for measure in collected.values():
        assert (measure.family, measure.higher_is_better, measure.needs_hierarchy) == ("PGDL winners", False, False)
    assert collected["pgdl_dbi"].settings.pair_reduction == "mean_all"  # their competition code's reading
    assert collected["pgdl_dbi_mixup"].with_settings(pair_reduction="max").settings.pair_reduction == "max"


def test_the_first_place_measure_is_the_product_of_its_factors(vgg_and_images):
    model, _ = vgg_and_images
    g = generator()
    y = torch.arange(48) % 3
    x = y.view(-1, 1, 1, 1).float() + torch.randn(48, 3, 8, 8, generator=g)
    collected = {}
    icc_pgdl.icc_bench_register_measures(registry=SimpleNamespace(add=lambda m: collected.setdefault(m.name, m)))
    small = {"windows": 3, "window_size": 24, "groups": 2}
    values = {}
    for name in ("pgdl_dbi_mixup", "pgdl_dbi", "pgdl_mixup"):
        measure = collected[name]
        overrides = {k: v for k, v in small.items() if k in type(measure.settings).model_fields}
        ctx = MeasureContext(model, dataset(x, y), HP, seed=0)
        values[name] = compute_measure(measure.with_settings(**overrides), ctx)
    assert values["pgdl_dbi"] > 0 and values["pgdl_mixup"] > 0
    assert values["pgdl_dbi_mixup"] == pytest.approx(values["pgdl_dbi"] * values["pgdl_mixup"], rel=1e-12)


def test_batch_sizes_change_no_value(vgg_and_images):
    model, _ = vgg_and_images
    g = generator()
    y = torch.arange(48) % 3
    x = y.view(-1, 1, 1, 1).float() + torch.randn(48, 3, 8, 8, generator=g)
    for run, settings in (
        (labelwise_mixup, LabelwiseMixupSettings(groups=2, mixup_loss="cross_entropy")),
        (first_layer_davies_bouldin, DaviesBouldinSettings(windows=3, window_size=24)),
        (augment_robustness, AugmentRobustnessSettings()),
    ):
        whole = run(model, x, y, settings, generator())
        in_sevens = run(model, x, y, settings.model_copy(update={"batch_size": 7}), generator())
        assert in_sevens == pytest.approx(whole, rel=1e-5), run.__name__
