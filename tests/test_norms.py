"""Tests of the norm measures (plugins/icc_norms): Jiang et al. 2020's definitions on hand-computed
networks, the BatchNorm conversion, plain references on a tiny VGG, and what each value means."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import icc_norms
from icc_bench import MeasureContext, NotApplicable
from icc_bench.config import ArchitectureSpec, DatasetSpec, HyperParams
from icc_bench.data import ImageDataset, load_dataset
from icc_bench.models import build_model
from icc_bench.zoo import Zoo
from icc_norms.batchnorm import ChannelAffine, convert_batchnorm, foldable_pairs, weight_layers
from icc_norms.kernels import frobenius_distance, log_prod_of_spec, log_sum_of_fro, param_norm, path_norm
from icc_norms.settings import NormSettings

HP = HyperParams(learning_rate=0.05, batch_size=24, weight_decay=0.0, optimizer="sgd", dropout=0.0,
                 augmentation=False, width=1.0, depth=1.0)
SETTINGS = NormSettings()


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    options = dict(superclasses=2, subclasses=2, train_per_subclass=6, test_per_subclass=3, resolution=8, seed=0)
    return load_dataset(DatasetSpec(name="synthetic_hierarchy", options=options))


def vgg(data: ImageDataset, seed: int = 0, arch: str = "vgg") -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ArchitectureSpec(name=arch, base_width=4), HP, data.num_classes, data.input_shape)


def train(model: nn.Module, data: ImageDataset, steps: int, weight_decay: float = 0.0) -> nn.Module:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=weight_decay)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
        optimizer.step()
    return model.eval()


# -- a network small enough to compute by hand -------------------------------------------------


def hand_network() -> nn.Sequential:
    """x (2) -> Linear(2, 2) -> BatchNorm1d -> ReLU -> Linear(2, 1), with round numbers.

    BatchNorm: gamma = (2, 1), beta = (1, -1), mean = (1, 0), var = (4, 0.25), eps = 0, so
    a = gamma / sqrt(var) = (1, 2) and b = beta - a * mean = (0, -1).
    """
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, eps=0.0), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.5, -0.5]))
        net[1].weight.copy_(torch.tensor([2.0, 1.0]))
        net[1].bias.copy_(torch.tensor([1.0, -1.0]))
        net[1].running_mean.copy_(torch.tensor([1.0, 0.0]))
        net[1].running_var.copy_(torch.tensor([4.0, 0.25]))
        net[3].weight.copy_(torch.tensor([[1.0, -3.0]]))
        net[3].bias.copy_(torch.tensor([2.0]))
    return net.eval()


def test_conversion_and_every_norm_on_a_hand_computed_network():
    net = hand_network()
    converted = convert_batchnorm(net, torch.randn(5, 2))
    # Folded: W1' = diag(a) W1 = [[1, 2], [6, -2]], c1' = a * c1 + b = (0.5, -2).
    layers = weight_layers(converted)
    assert [name for name, _ in layers] == ["0", "3"]
    assert torch.equal(layers[0][1], torch.tensor([[1.0, 2.0], [6.0, -2.0]], dtype=torch.float64))
    assert torch.equal(converted[0].bias, torch.tensor([0.5, -2.0], dtype=torch.float64))
    assert isinstance(converted[1], nn.Identity)
    matrices = [w for _, w in layers]
    # ||W1'||_F^2 = 1 + 4 + 36 + 4 = 45, ||W2||_F^2 = 1 + 9 = 10.
    assert param_norm(matrices) == 55.0
    assert log_sum_of_fro(matrices) == pytest.approx(math.log(2) + (math.log(45) + math.log(10)) / 2, rel=1e-14)
    # W1'^T W1' = [[37, -10], [-10, 8]]: lambda_max = (45 + sqrt(45^2 - 4 * 196)) / 2; W2: 10.
    assert log_prod_of_spec(matrices) == pytest.approx(math.log((45 + math.sqrt(1241)) / 2) + math.log(10), rel=1e-12)
    # Squared: W1'^2 = [[1, 4], [36, 4]], c1'^2 = (0.25, 4); ones -> (5.25, 44); W2^2 = (1, 9), c2^2 = 4.
    assert path_norm(converted, (2,)) == pytest.approx(5.25 + 9 * 44 + 4, rel=1e-14)
    # From W1^0 = all ones (its BatchNorm at init: a = 1, b = 0) and W2^0 = 0:
    # ||W1' - W1^0||^2 = 0 + 1 + 25 + 9 = 35, ||W2 - 0||^2 = 10.
    initial = hand_network()
    with torch.no_grad():
        initial[0].weight.fill_(1.0)
        initial[3].weight.zero_()
        initial[1].weight.fill_(1.0), initial[1].bias.zero_(), initial[1].running_mean.zero_(), initial[1].running_var.fill_(1.0)
    start = [w for _, w in weight_layers(convert_batchnorm(initial))]
    assert frobenius_distance(matrices, start) == 45.0


def test_conversion_computes_the_same_function_and_leaves_the_model_alone(data):
    model = train(vgg(data), data, steps=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_batchnorm(model, data.x_train)
    with torch.no_grad():
        assert torch.allclose(converted(data.x_train.double()), model(data.x_train).double(), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_only_a_batchnorm_fed_by_a_layer_alone_is_folded(data):
    """VGG: every conv -> BN. Pre-activation WRN: only conv1 -> bn2 of each block; bn1 follows an
    addition (or the stem) and the last BN the final addition, so they stay affine maps."""
    assert foldable_pairs(vgg(data)) == [(f"stage{s}.conv{u}.conv", f"stage{s}.conv{u}.bn") for s in range(1, 5) for u in (1, 2)]
    wrn = train(vgg(data, arch="wrn"), data, steps=3)
    pairs = foldable_pairs(wrn)
    assert pairs and all(conv.endswith("conv1") and bn.endswith("bn2") for conv, bn in pairs)
    converted = convert_batchnorm(wrn, data.x_train)  # the check inside passes
    affine = [m for m in converted.modules() if isinstance(m, ChannelAffine)]
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in wrn.modules())
    assert len(affine) == n_bn - len(pairs)


def test_a_wrong_fold_is_caught_by_the_check(data, monkeypatch):
    import icc_norms.batchnorm as batchnorm

    wrn = train(vgg(data, arch="wrn"), data, steps=3)
    # Fold the first block's bn1 into the stem convolution, whose output also feeds the shortcut.
    bad = [("stem", "stage1.block1.bn1")]
    assert isinstance(wrn.get_submodule("stem"), nn.Conv2d)
    monkeypatch.setattr(batchnorm, "foldable_pairs", lambda model: bad)
    with pytest.raises(ValueError, match="computes another function"):
        batchnorm.convert_batchnorm(wrn, data.x_train)


# -- the measures against plain references on a tiny trained VGG -------------------------------


def plain_folded_matrices(model: nn.Module) -> list[np.ndarray]:
    """Conv kernels scaled per output channel by gamma / sqrt(var + eps), then the classifier."""
    out = []
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    for s in range(1, 5):
        for u in (1, 2):
            p = f"stage{s}.conv{u}"
            scale = state[f"{p}.bn.weight"] / np.sqrt(state[f"{p}.bn.running_var"] + 1e-5)
            w = state[f"{p}.conv.weight"] * scale[:, None, None, None]
            out.append(w.reshape(w.shape[0], -1))
    out.append(state["classifier.weight"])
    return out


def context(model: nn.Module, data: ImageDataset, **kwargs) -> MeasureContext:
    return MeasureContext(model, data, HP, seed=0, **kwargs)


def test_measures_match_a_plain_reference(data):
    model = train(vgg(data), data, steps=10)
    ws = plain_folded_matrices(model)
    ctx = context(model, data)
    assert icc_norms.param_norm_measure(ctx, SETTINGS) == pytest.approx(sum((w**2).sum() for w in ws), rel=1e-6)
    assert icc_norms.log_sum_of_fro_measure(ctx, SETTINGS) == pytest.approx(
        math.log(len(ws)) + np.mean([math.log((w**2).sum()) for w in ws]), rel=1e-6
    )
    assert icc_norms.log_prod_of_spec_measure(ctx, SETTINGS) == pytest.approx(
        sum(2 * math.log(np.linalg.svd(w, compute_uv=False)[0]) for w in ws), rel=1e-6
    )


def test_path_norm_of_the_vgg_matches_a_plain_forward(data):
    """Plain reference: fold by hand, square, and run the layers one by one on the ones image."""
    model = train(vgg(data), data, steps=10)
    state = {k: v.double() for k, v in model.state_dict().items()}
    h = torch.ones((1, *data.input_shape), dtype=torch.float64)
    for s in range(1, 5):
        if s > 1:
            h = nn.functional.max_pool2d(h, 2)
        for u in (1, 2):
            p = f"stage{s}.conv{u}"
            a = state[f"{p}.bn.weight"] / torch.sqrt(state[f"{p}.bn.running_var"] + 1e-5)
            b = state[f"{p}.bn.bias"] - a * state[f"{p}.bn.running_mean"]
            w = state[f"{p}.conv.weight"] * a[:, None, None, None]
            h = torch.relu(nn.functional.conv2d(h, w**2, b**2, padding=1))
    h = h.mean(dim=(2, 3))
    expected = float((h @ (state["classifier.weight"] ** 2).T + state["classifier.bias"] ** 2).sum())
    assert icc_norms.path_norm_measure(context(model, data), SETTINGS) == pytest.approx(expected, rel=1e-9)


# -- what the values mean --------------------------------------------------------------------


def test_folded_norms_do_not_see_where_batchnorm_keeps_the_scale(data):
    """Multiply a conv kernel by 10 and its BatchNorm's running statistics accordingly: the network
    computes the same function, the folded norms are unchanged, the raw-kernel norms are not."""
    model = train(vgg(data), data, steps=10)
    rescaled = train(vgg(data), data, steps=10)
    with torch.no_grad():
        unit = rescaled.get_submodule("stage2.conv1")
        unit.conv.weight.mul_(10.0)
        unit.bn.running_mean.mul_(10.0)
        unit.bn.running_var.mul_(100.0).add_(unit.bn.eps * 99.0)  # (10^2 var + eps) = 10^2 (var + eps)
        assert torch.allclose(rescaled(data.x_train), model(data.x_train), rtol=1e-4, atol=1e-5)
    raw = NormSettings(fold_batchnorm=False)
    for fn in (icc_norms.param_norm_measure, icc_norms.log_prod_of_spec_measure, icc_norms.path_norm_measure):
        assert fn(context(rescaled, data), SETTINGS) == pytest.approx(fn(context(model, data), SETTINGS), rel=1e-6)
    assert icc_norms.param_norm_measure(context(rescaled, data), raw) > 5 * icc_norms.param_norm_measure(context(model, data), raw)


def test_path_norm_scales_with_the_square_of_the_classifier():
    """Every input-output path crosses the classifier once (or is its bias): scaling it by t
    scales the squared path norm by t^2."""
    net = hand_network()
    base = path_norm(convert_batchnorm(net), (2,))
    with torch.no_grad():
        net[3].weight.mul_(3.0), net[3].bias.mul_(3.0)
    assert path_norm(convert_batchnorm(net), (2,)) == pytest.approx(9 * base, rel=1e-14)


def test_weight_decay_gives_smaller_norms(data):
    plain = train(vgg(data), data, steps=30)
    decayed = train(vgg(data), data, steps=30, weight_decay=0.05)
    for fn in (icc_norms.param_norm_measure, icc_norms.log_sum_of_fro_measure):
        assert fn(context(decayed, data), SETTINGS) < fn(context(plain, data), SETTINGS)


def zoo_with(tmp_path, data, initial: dict, trained: dict, snapshots: bool = True) -> tuple[Zoo, dict]:
    zoo = Zoo(tmp_path / "zoo")
    record = {"model_id": "m", "seed": 0, "hyperparams": HP.model_dump(mode="json"),
              "architecture": ArchitectureSpec(name="vgg", base_width=4).model_dump(mode="json"),
              "num_classes": data.num_classes, "input_shape": list(data.input_shape)}
    return zoo, zoo.write_model(record, trained, snapshots={0: initial} if snapshots else None)


def state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_distance_from_init_is_zero_untrained_and_grows_with_training(tmp_path, data):
    initial = state(vgg(data))
    values = []
    for steps in (0, 3, 30):
        trained = state(train(vgg(data), data, steps=steps))
        zoo, record = zoo_with(tmp_path / str(steps), data, initial, trained)
        model, _ = zoo.load_model("m")
        values.append(icc_norms.distance_from_init(context(model, data, record=record, zoo=zoo), SETTINGS))
    assert values[0] == 0.0
    assert 0 < values[1] < values[2]
    # The plain reference: folded kernels of both, squared differences summed.
    final = train(vgg(data), data, steps=30)
    start = vgg(data)
    start.eval()
    expected = sum(((w - w0) ** 2).sum() for w, w0 in zip(plain_folded_matrices(final), plain_folded_matrices(start)))
    assert values[2] == pytest.approx(expected, rel=1e-6)


def test_distance_from_init_needs_the_epoch_0_weights(tmp_path, data):
    model = vgg(data)
    with pytest.raises(NotApplicable, match=r"no weights saved at epoch 0 \(saved epochs: none\)"):
        icc_norms.distance_from_init(context(model, data), SETTINGS)
    zoo, record = zoo_with(tmp_path, data, state(model), state(model), snapshots=False)
    with pytest.raises(NotApplicable, match="no weights saved at epoch 0"):
        icc_norms.distance_from_init(context(model, data, record=record, zoo=zoo), SETTINGS)
    zoo, record = zoo_with(tmp_path / "with", data, state(model), state(model))
    with pytest.raises(NotApplicable, match="not loaded from a zoo"):
        icc_norms.distance_from_init(context(model, data, record=record), SETTINGS)
