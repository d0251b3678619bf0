"""The probe (SPEC §1): which layers, what values, and a model left exactly as it was."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.models import build_model
from icc_bench.probe import Representations, compute_representations, probe_layers, stratified_indices

INPUT_SHAPE = (3, 12, 12)


def _hp(**overrides) -> HyperParams:
    values = dict(
        learning_rate=0.1, batch_size=100, weight_decay=0.0, optimizer="sgd",
        dropout=0.0, augmentation=False, width=1.0, depth=1.0,
    )
    return HyperParams(**(values | overrides))


def _randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial affine parameters and running statistics, so eval mode and train mode differ."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            module.weight.data = torch.rand(c, generator=generator) + 0.5
            module.bias.data = torch.randn(c, generator=generator)
            module.running_mean = torch.randn(c, generator=generator)
            module.running_var = torch.rand(c, generator=generator) + 0.5
    return model


def _tiny(name: str = "vgg", **hp_overrides) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ArchitectureSpec(name=name, base_width=4), _hp(**hp_overrides), 5, INPUT_SHAPE)
    return _randomize_batchnorms(model)


def _inputs(n: int = 7) -> torch.Tensor:
    return torch.randn(n, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1))


def _eval_batchnorm(bn: nn.modules.batchnorm._BatchNorm, z: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)


def _manual_vgg(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The VGG's forward written out with functional ops, no hooks: per conv, the BN output max over
    H, W, and the ReLU output max over H, W (pooling the activation itself)."""
    pre, post = [], []
    h = x
    for stage in range(1, 5):
        if stage > 1:
            h = F.max_pool2d(h, 2)
        for unit in getattr(model, f"stage{stage}"):
            z = _eval_batchnorm(unit.bn, F.conv2d(h, unit.conv.weight, padding=1))
            h = F.relu(z)
            pre.append(z.amax(dim=(2, 3)))
            post.append(h.amax(dim=(2, 3)))
    return pre, post


# -- probe_layers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg", "wrn"])
def test_probe_layers_of_the_paper_networks_are_all_their_batchnorms(name):
    model = _tiny(name, depth=1.5, dropout=0.2)
    all_bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert probe_layers(model) == all_bns
    assert len(all_bns) == {"vgg": 12, "wrn": 25}[name]


class _Branches(nn.Module):
    """BatchNorms that do and do not feed a ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.feeds_module = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.feeds_functional = nn.BatchNorm2d(3)
        self.through_dropout = nn.BatchNorm2d(3)
        self.dropout = nn.Dropout(0.3)
        self.relu_after_dropout = nn.ReLU(inplace=True)
        self.into_sum = nn.BatchNorm2d(3)
        self.relu_of_sum = nn.ReLU()
        self.into_sigmoid = nn.BatchNorm2d(3)

    def forward(self, x):
        x = self.conv(x)
        a = self.relu(self.feeds_module(x))
        b = F.relu(self.feeds_functional(x))
        c = self.relu_after_dropout(self.dropout(self.through_dropout(x)))
        d = self.relu_of_sum(self.into_sum(x) + x)
        e = torch.sigmoid(self.into_sigmoid(x))
        return a + b + c + d + e


def test_probe_layers_follow_the_graph():
    names = [name for name, _ in probe_layers(_Branches())]
    assert names == ["feeds_module", "feeds_functional", "through_dropout"]


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn_a = nn.BatchNorm2d(3)
        self.relu_a = nn.ReLU()
        self.bn_b = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:  # a Python branch on data: torch.fx cannot trace it
            x = -x
        z = self.relu_a(self.bn_a(self.conv(x)))
        return self.head(self.bn_b(z).mean((2, 3)))


def test_untraceable_model_falls_back_to_registration_order_with_a_warning():
    with pytest.warns(UserWarning, match="cannot trace"):
        names = [name for name, _ in probe_layers(_Untraceable())]
    assert names == ["bn_a"]


def test_probe_layers_restores_train_mode():
    model = _tiny(dropout=0.2).train()
    model.stage2.eval()
    probe_layers(model)
    assert model.training and model.stage1.training and not model.stage2.conv1.bn.training


# -- compute_representations ------------------------------------------------------------------------


def test_representations_equal_a_hook_free_manual_forward():
    model, x = _tiny(), _inputs()
    reps = compute_representations(model, x, batch_size=3)
    expected_pre, expected_post = _manual_vgg(model, x)
    assert reps.layer_names == [f"stage{s}.conv{u}.bn" for s in range(1, 5) for u in (1, 2)]
    assert [tuple(p.shape) for p in reps.preactivations] == [(7, c) for c in (4, 4, 8, 8, 16, 16, 32, 32)]
    assert reps.n_samples == 7 and reps.n_neurons == 120
    for got, want in zip(reps.preactivations, expected_pre):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # Activations are the pooled ReLU outputs, and exactly the ReLU of the pooled pre-activations.
    for got, want, pre in zip(reps.activations, expected_post, reps.preactivations):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(got, torch.relu(pre))
    assert any((p < 0).any() for p in reps.preactivations)  # the values are taken before the ReLU


def test_batch_size_does_not_change_the_result():
    model, x = _tiny("wrn", dropout=0.4), _inputs()
    whole = compute_representations(model, x)
    batched = compute_representations(model, x, batch_size=2)
    for a, b in zip(whole.preactivations, batched.preactivations):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_model_state_and_mode_are_restored():
    model = _tiny(dropout=0.2).train()
    model.stage3.eval()  # a mixed state must come back as it was, not as all-train
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute_representations(model, _inputs())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched: eval mode
    assert {n: m.training for n, m in model.named_modules()} == {
        n: not n.startswith("stage3") for n, _ in model.named_modules()
    }


def test_hooks_removed_and_mode_restored_on_error():
    model = _tiny().train()
    with pytest.raises(RuntimeError):
        compute_representations(model, torch.randn(2, 1, 12, 12))  # 1 channel into a 3-channel conv
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(m.training for m in model.modules())


def test_float32_on_the_model_device_for_a_float64_model():
    model = _tiny().double()
    reps = compute_representations(model, _inputs().double())
    assert all(p.dtype == torch.float32 and p.device == torch.device("cpu") for p in reps.preactivations)


def test_timm_fused_batchnorm_act_is_probed_before_its_inplace_relu():
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        BatchNormAct2d(4, act_layer=nn.ReLU, inplace=True),  # a layer
        nn.Conv2d(4, 4, 3),
        BatchNormAct2d(4, act_layer=nn.SiLU),  # its output has been through a SiLU: not a layer
        nn.ReLU(),
        BatchNormAct2d(4, apply_act=False),  # no activation of its own, then a ReLU: a layer
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    _randomize_batchnorms(model)
    assert [name for name, _ in probe_layers(model)] == ["1", "5"]
    x = _inputs(5)
    reps = compute_representations(model, x)
    z1 = _eval_batchnorm(model[1], model[0](x))
    z3 = F.silu(_eval_batchnorm(model[3], model[2](F.relu(z1))))
    z5 = _eval_batchnorm(model[5], F.relu(z3))
    torch.testing.assert_close(reps.preactivations[0], z1.amax(dim=(2, 3)))
    torch.testing.assert_close(reps.preactivations[1], z5.amax(dim=(2, 3)))
    assert (reps.preactivations[0] < 0).any()


def test_batchnorm1d_output_kept_as_is_despite_an_inplace_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(inplace=True))
    _randomize_batchnorms(model)
    x = torch.randn(9, 3, 4)
    reps = compute_representations(model, x, batch_size=4)
    torch.testing.assert_close(reps.preactivations[0], _eval_batchnorm(model[2], model[1](x.flatten(1))))
    assert (reps.preactivations[0] < 0).any()


def test_model_without_probe_layers_is_refused():
    with pytest.raises(ValueError, match="no BatchNorm whose output feeds a ReLU"):
        compute_representations(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(3, 4))


def test_batchnorm_run_twice_is_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.relu = nn.BatchNorm1d(4), nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn(self.relu(self.bn(x))))

    with pytest.raises(RuntimeError, match="'bn' ran 2 times"):
        compute_representations(Shared(), torch.randn(3, 4))


@pytest.mark.parametrize(("x", "batch_size"), [(torch.randn(0, *INPUT_SHAPE), 10), (_inputs(), 0)])
def test_empty_input_or_batch_size_is_refused(x, batch_size):
    with pytest.raises(ValueError, match="at least"):
        compute_representations(_tiny(), x, batch_size=batch_size)


def test_representations_properties_without_layers():
    assert Representations([], [], []).n_samples == 0
    assert Representations([], [], []).n_neurons == 0


# -- stratified_indices -----------------------------------------------------------------------------


LABELS = torch.tensor([2, 0, 1, 2, 0, 2, 2, 0, 0, 2, 1, 0, 2, 2])  # class counts: 0 -> 5, 1 -> 2, 2 -> 7


def test_stratified_counts_per_class():
    indices = stratified_indices(LABELS, 3, seed=0)
    assert indices.dtype == torch.int64
    assert torch.equal(indices, indices.unique())  # sorted, no repeats
    assert Counter(LABELS[indices].tolist()) == {0: 3, 1: 2, 2: 3}  # class 1 has only 2: both


def test_stratified_is_fixed_by_the_seed():
    draws = {seed: stratified_indices(LABELS, 3, seed).tolist() for seed in range(6)}
    assert draws[0] == stratified_indices(LABELS, 3, 0).tolist()
    assert len({tuple(d) for d in draws.values()}) > 1


def test_stratified_all_and_more_than_available():
    assert torch.equal(stratified_indices(LABELS, None, 0), torch.arange(len(LABELS)))
    assert torch.equal(stratified_indices(LABELS, 100, 0), torch.arange(len(LABELS)))
    assert stratified_indices(torch.tensor([], dtype=torch.int64), 3, 0).numel() == 0


def test_stratified_refuses_bad_arguments():
    with pytest.raises(ValueError, match="per_class"):
        stratified_indices(LABELS, 0, 0)
    with pytest.raises(ValueError, match="1-D"):
        stratified_indices(LABELS.view(2, 7), 3, 0)
