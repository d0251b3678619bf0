"""Tests of the margin measures (plugins/icc_margins): hand-computed margins, a plain reference of
the normalized hidden-layer margin, and larger margins for a model trained longer on separable data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import icc_margins
from icc_bench import MeasureContext, NotApplicable
from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.data import ImageDataset
from icc_bench.models import build_model
from icc_margins.kernels import inverse_squared_margin, layer_margins, normalized_margin_statistic, output_margins
from icc_margins.layers import activation_modules, pick_by_depth
from icc_margins.settings import LayerMarginSettings, OutputMarginSettings

HP = HyperParams(learning_rate=0.05, batch_size=24, weight_decay=0.0, optimizer="sgd", dropout=0.0,
                 augmentation=False, width=1.0, depth=1.0)


def test_output_margin_and_its_inverse_square_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 5.0]])
    margins = output_margins(logits, torch.tensor([0, 0, 2]))
    assert margins.tolist() == [2.0, -2.0, 4.0]  # 3 - 1, 0 - 2, 5 - 1
    # Median 2: 1 / 4.
    assert inverse_squared_margin(margins, quantile=0.5) == 0.25
    # 10th percentile, linear interpolation: -2 + 0.2 * (2 - (-2)) = -1.2 <= 0.
    assert inverse_squared_margin(margins) == pytest.approx(1e12)  # floored: the worst value
    assert inverse_squared_margin(margins, nonpositive="abs") == pytest.approx(1 / 1.44)
    assert inverse_squared_margin(margins, quantile=0.75) == pytest.approx(1 / 9)  # 2 + 0.5 * 2 = 3


def blobs(n: int = 100, gap: float = 1.5) -> ImageDataset:
    """Two Gaussian blobs in the plane, 2 * gap apart with std 0.5: separable but for a few points."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2 * n) % 2
    x = torch.randn(2 * n, 2, generator=g) * 0.5 + torch.stack([(2 * y - 1) * gap, torch.zeros(2 * n)], 1)
    x = x[:, :, None, None]  # (N, 2, 1, 1): "images" of 2 channels
    return ImageDataset("blobs", x, y, x, y, 2)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2),
    )


def trained(data: ImageDataset, steps: int) -> nn.Module:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
        optimizer.step()
    return model.eval()


def test_hidden_layer_margin_matches_a_plain_reference():
    """At the last ReLU output h the margin is affine, m = (w_y - w_c) . h + (b_y - b_c), so the
    first-order distance is the exact distance to the hyperplane; at the input the gradient is
    W1^T (a * [z > 0] * W2^T ...) written out by hand for a one-hidden-layer network."""
    data = blobs(20)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    model.train()
    with torch.no_grad():
        model(data.x_train)  # running statistics of its own
    model.eval()
    eps = 1e-6
    result = layer_margins(model, data.x_train, data.y_train, [("3", model[3])], include_input=True, eps=eps, batch_size=7)

    x, y = data.x_train.flatten(1).double(), data.y_train
    w1, c1 = model[1].weight.double().detach(), model[1].bias.double().detach()
    bn = model[2]
    a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double().detach()
    b = (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).double().detach()
    w2, c2 = model[4].weight.double().detach(), model[4].bias.double().detach()
    expected_h, expected_x, margins = [], [], []
    for xi, yi in zip(x, y.tolist()):
        z = a * (w1 @ xi + c1) + b
        h = torch.relu(z)
        other = 1 - yi
        m = float((w2[yi] - w2[other]) @ h + c2[yi] - c2[other])
        grad_h = w2[yi] - w2[other]
        grad_x = w1.T @ (a * (z > 0).double() * grad_h)
        margins.append(m)
        expected_h.append(m / math.sqrt(eps + float(grad_h @ grad_h)))
        expected_x.append(m / math.sqrt(eps + float(grad_x @ grad_x)))
    assert result.names == ["input", "3"]
    assert np.allclose(result.margins.numpy(), margins, rtol=1e-5, atol=1e-6)
    assert np.allclose(result.distances[1].numpy(), expected_h, rtol=1e-5, atol=1e-6)
    assert np.allclose(result.distances[0].numpy(), expected_x, rtol=1e-5, atol=1e-6)
    hs = torch.relu(a * (x @ w1.T + c1) + b).numpy()
    assert result.total_variation[1].item() == pytest.approx(hs.var(axis=0).sum(), rel=1e-5)  # population variance
    assert result.total_variation[0].item() == pytest.approx(x.numpy().var(axis=0).sum(), rel=1e-6)

    correct = np.array(margins) > 0
    medians = [np.quantile(np.array(d)[correct], 0.5) / math.sqrt(nu) for d, nu in
               ((expected_x, x.numpy().var(axis=0).sum()), (expected_h, hs.var(axis=0).sum()))]
    assert normalized_margin_statistic(result) == pytest.approx(np.mean(np.log(medians)), rel=1e-5)


def test_margins_grow_with_training_on_separable_data():
    data = blobs()
    values = []
    for steps in (5, 50, 500):
        ctx = MeasureContext(trained(data, steps), data, HP, seed=0)
        values.append(
            (icc_margins.inverse_margin(ctx, OutputMarginSettings()), icc_margins.layer_margin(ctx, LayerMarginSettings()))
        )
    inverse, layer = zip(*values)
    assert inverse[0] > inverse[1] > inverse[2]  # 1 / gamma^2 falls: the 10th-percentile margin grows
    assert layer[0] < layer[1] < layer[2]  # the normalized hidden-layer margins grow


def test_the_normalized_margin_does_not_see_the_scale_of_the_logits():
    data = blobs()
    model = trained(data, 50)
    ctx = MeasureContext(model, data, HP, seed=0)
    before = icc_margins.layer_margin(ctx, LayerMarginSettings())
    with torch.no_grad():
        model[-1].weight.mul_(10.0), model[-1].bias.mul_(10.0)
    assert icc_margins.layer_margin(ctx, LayerMarginSettings()) == pytest.approx(before, rel=1e-5, abs=1e-6)
    # ... while 1 / gamma^2 falls by 100.
    scaled = icc_margins.inverse_margin(ctx, OutputMarginSettings())
    with torch.no_grad():
        model[-1].weight.div_(10.0), model[-1].bias.div_(10.0)
    assert icc_margins.inverse_margin(ctx, OutputMarginSettings()) == pytest.approx(100 * scaled, rel=1e-4)


def test_no_correct_sample_is_not_applicable():
    data = blobs(10)
    model = trained(data, 50)
    flipped = ImageDataset("flipped", data.x_train, 1 - data.y_train, data.x_test, data.y_test, 2)
    with pytest.raises(NotApplicable, match="no sample is classified correctly"):
        icc_margins.layer_margin(MeasureContext(model, flipped, HP, seed=0), LayerMarginSettings())


def test_layers_are_the_relus_after_the_probe_batchnorms_at_equally_spaced_depths():
    assert pick_by_depth(8, (0.25, 0.5, 0.75)) == [1, 3, 5]  # VGG x1: stage outputs 1-3
    assert pick_by_depth(12, (0.25, 0.5, 0.75)) == [2, 5, 8]  # VGG depth x1.5: 3 convs per stage
    assert pick_by_depth(3, (0.25, 0.5, 0.75)) == [0, 1, 2]
    torch.manual_seed(0)
    model = build_model(ArchitectureSpec(name="vgg", base_width=4), HP, 2, (3, 8, 8)).eval()
    found = activation_modules(model, torch.randn(1, 3, 8, 8))
    assert [name for name, _ in found] == [f"stage{s}.conv{u}.bn" for s in range(1, 5) for u in (1, 2)]
    assert all(module is model.get_submodule(name[: -len("bn")] + "relu") for name, module in found)


def test_settings_refuse_fractions_outside_the_network():
    with pytest.raises(ValueError, match="depth fraction"):
        LayerMarginSettings(depth_fractions=(0.5, 1.5))
    with pytest.raises(ValueError, match="strictly increasing"):
        LayerMarginSettings(depth_fractions=(0.5, 0.25))
