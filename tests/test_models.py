"""The paper's VGG and Wide ResNet (Appendix A.2), timm models by name, and the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import icc_bench.models as models
from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.models import build_model, count_layers, list_architectures, register_architecture
from icc_bench.probe import probe_layers


def _hp(**overrides) -> HyperParams:
    values = dict(
        learning_rate=0.1, batch_size=100, weight_decay=0.0, optimizer="sgd",
        dropout=0.0, augmentation=False, width=1.0, depth=1.0,
    )
    return HyperParams(**(values | overrides))


def _build(name: str, *, base_width: int = 4, base_depth: int | None = None, input_shape=(3, 8, 8),
           num_classes: int = 5, **hp_overrides) -> nn.Module:
    arch = ArchitectureSpec(name=name, base_width=base_width, base_depth=base_depth)
    return build_model(arch, _hp(**hp_overrides), num_classes, input_shape)


def _conv3x3_and_linear(model: nn.Module) -> int:
    """The papers' layer count written out: 3x3 convolutions plus linear layers (1x1 shortcuts excluded)."""
    return sum(
        (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)) or isinstance(m, nn.Linear) for m in model.modules()
    )


# -- depth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "depth", "layers"), [("vgg", 1.0, 9), ("vgg", 1.5, 13), ("wrn", 1.0, 18), ("wrn", 1.5, 26)]
)
def test_paper_depths(name, depth, layers):
    model = _build(name, depth=depth)
    assert _conv3x3_and_linear(model) == layers
    assert count_layers(model) == layers


def test_wrn_projection_shortcuts_are_not_counted():
    model = _build("wrn")
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 3  # one per width change, at the start of stages 2, 3, 4
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == 18 + 3
    assert count_layers(model) == 18


@pytest.mark.parametrize(
    ("name", "base_depth", "depth", "layers"),
    [("vgg", 5, 1.0, 5), ("vgg", 5, 2.0, 9), ("vgg", 17, 1.0, 17), ("wrn", 10, 1.0, 10), ("wrn", 10, 3.0, 26)],
)
def test_base_depth(name, base_depth, depth, layers):
    assert count_layers(_build(name, base_depth=base_depth, depth=depth)) == layers


@pytest.mark.parametrize(("name", "base_depth"), [("vgg", 10), ("vgg", 1), ("wrn", 17), ("wrn", 2)])
def test_base_depth_that_does_not_fit_the_stages_is_refused(name, base_depth):
    with pytest.raises(ValueError, match=f"base_depth {base_depth}"):
        _build(name, base_depth=base_depth)


def test_count_layers_takes_the_longest_path():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.long = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3))
            self.short = nn.Conv2d(1, 2, 7)
            self.head = nn.Linear(2, 1)

        def forward(self, x):
            return self.head((self.long(x) + self.short(x)).mean((2, 3)))

    assert count_layers(TwoBranches()) == 4


def test_count_layers_counts_functional_weight_layers():
    class FunctionalConv(nn.Module):  # like timm's CondConv2d: not an nn.Conv2d, calls F.conv2d
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(2, 1, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.weight)

    assert count_layers(nn.Sequential(FunctionalConv(), nn.Conv2d(2, 2, 1), nn.Flatten(), nn.LazyLinear(1))) == 3


def test_count_layers_falls_back_to_counting_modules_when_untraceable():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.Linear(1, 1)

        def forward(self, x):
            x = self.a(x) if x.sum() > 0 else self.b(x)  # a Python branch on data: torch.fx cannot trace it
            return self.c(x.mean((2, 3)))

    with pytest.warns(UserWarning, match="cannot trace"):
        assert count_layers(DataDependent()) == 3


# -- width --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg", "wrn"])
@pytest.mark.parametrize(("width", "widths"), [(1.0, [32, 64, 128, 256]), (1.5, [48, 96, 192, 384])])
def test_paper_stage_widths(name, width, widths):
    model = _build(name, base_width=32, width=width)
    for stage, expected in enumerate(widths, start=1):
        convs = [m for m in getattr(model, f"stage{stage}").modules() if isinstance(m, nn.Conv2d)]
        assert {c.out_channels for c in convs} == {expected}
    assert model.classifier.in_features == widths[-1]


def test_vgg_probe_neurons_match_the_paper():
    # Figure 4's caption: 960 neurons in the x1 VGG, 1440 at width or depth x1.5.
    for overrides, neurons in [({}, 960), ({"width": 1.5}, 1440), ({"depth": 1.5}, 1440)]:
        model = _build("vgg", base_width=32, **overrides)
        assert sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)) == neurons


# -- inputs and outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg", "wrn"])
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 8, 8), (1, 16, 16), (3, 32, 32), (3, 9, 13)])
def test_output_shape_for_any_input_of_at_least_8x8(name, input_shape):
    model = _build(name, input_shape=input_shape, num_classes=7)
    assert model(torch.randn(2, *input_shape)).shape == (2, 7)


@pytest.mark.parametrize("name", ["vgg", "wrn"])
def test_input_smaller_than_8_is_refused(name):
    with pytest.raises(ValueError, match="too small"):
        _build(name, input_shape=(3, 7, 16))


# -- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "sites"), [("vgg", 4), ("wrn", 8)])  # VGG: 3 poolings + classifier; WRN: 8 blocks
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4])
def test_dropout_modules_present_iff_rate_positive(name, sites, rate):
    dropouts = [m for m in _build(name, dropout=rate).modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == (sites if rate > 0 else 0)
    assert all(d.p == rate for d in dropouts)


@pytest.mark.parametrize("name", ["vgg", "wrn"])
def test_dropout_does_not_change_parameter_names(name):
    torch.manual_seed(0)
    plain = _build(name, dropout=0.0).state_dict()
    torch.manual_seed(0)
    dropped = _build(name, dropout=0.4).state_dict()
    assert plain.keys() == dropped.keys()
    assert all(torch.equal(plain[k], dropped[k]) for k in plain)


# -- BatchNorm before every ReLU ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg", "wrn"])
@pytest.mark.parametrize("depth", [1.0, 1.5])
def test_every_relu_takes_a_batchnorm_output_and_every_batchnorm_feeds_a_relu(name, depth):
    model = _build(name, depth=depth, dropout=0.2)
    graph_module = fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    calls = [n for n in graph_module.graph.nodes if n.op == "call_module"]
    relus = [n for n in calls if isinstance(modules[n.target], nn.ReLU)]
    bns = [n for n in calls if isinstance(modules[n.target], nn.BatchNorm2d)]
    assert relus and len(relus) == len(bns) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for relu in relus:
        (source,) = relu.all_input_nodes
        assert source in bns, f"{relu.target} takes {source}"
        assert not modules[relu.target].inplace  # the probe's hooks read the BatchNorm output
    for bn in bns:
        assert [u.target for u in bn.users] == [bn.target.replace("bn", "relu")]
    # No activation outside a ReLU module.
    functions = [n for n in graph_module.graph.nodes if n.op in ("call_function", "call_method")]
    assert not [n for n in functions if "relu" in str(n.target)]


def test_wrn_block_is_the_preactivation_block_written_out():
    def manual_block(block, x):  # eval mode: BatchNorm with running statistics, no dropout
        def bn(module, z):
            return F.batch_norm(z, module.running_mean, module.running_var, module.weight, module.bias, eps=module.eps)

        pre = F.relu(bn(block.bn1, x))
        out = F.relu(bn(block.bn2, F.conv2d(pre, block.conv1.weight, padding=1)))
        out = F.conv2d(out, block.conv2.weight, padding=1)
        return out + (x if block.shortcut is None else F.conv2d(pre, block.shortcut.weight))

    model = _build("wrn", dropout=0.4).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.bias.data.normal_()
    x = torch.randn(3, 4, 6, 6)
    same_width, widening = model.stage1.block2, model.stage2.block1
    assert same_width.shortcut is None and widening.shortcut is not None
    torch.testing.assert_close(same_width(x), manual_block(same_width, x))
    torch.testing.assert_close(widening(x), manual_block(widening, x))


# -- initialization -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg", "wrn"])
def test_initialization_is_fixed_by_the_seed(name):
    states = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        states.append(_build(name).state_dict())
    weights = [k for k in states[0] if k.endswith("weight")]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in weights)


# -- timm ---------------------------------------------------------------------------------------


def test_timm_resnet18_builds_and_its_probe_layers_are_the_bns_before_a_relu():
    model = _build("timm:resnet18", base_width=32, input_shape=(1, 16, 16), num_classes=7, dropout=0.2)
    assert model.get_classifier().out_features == 7
    assert model.conv1.in_channels == 1
    assert model.drop_rate == 0.2
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    assert count_layers(model) == 18
    # timm's BasicBlock: bn1 -> act1 is a probe layer; bn2 is added to the shortcut before act2,
    # and the downsample BatchNorm feeds the addition: neither is.
    expected = ["bn1"] + [f"layer{i}.{j}.bn1" for i in range(1, 5) for j in range(2)]
    assert [name for name, _ in probe_layers(model)] == expected


def test_timm_unknown_model_is_one_clear_sentence():
    with pytest.raises(ValueError, match=r"timm:resnet_18'.*no model named 'resnet_18'.*did you mean.*resnet18"):
        _build("timm:resnet_18", base_width=32)


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [({"base_depth": 18}, {}), ({"base_width": 8}, {}), ({}, {"width": 1.5}), ({}, {"depth": 1.5})],
)
def test_timm_refuses_the_paper_width_and_depth_knobs(arch, overrides):
    with pytest.raises(ValueError, match="fixed width and depth"):
        build_model(ArchitectureSpec(name="timm:resnet18", **arch), _hp(**overrides), 3, (3, 16, 16))


def test_timm_spec_read_back_from_a_record_builds():
    spec = ArchitectureSpec.model_validate(ArchitectureSpec(name="timm:resnet18").model_dump())
    assert spec.model_fields_set == {"name", "base_width", "base_depth"}
    assert build_model(spec, _hp(), 3, (3, 16, 16)).get_classifier().out_features == 3


# -- registry -----------------------------------------------------------------------------------


def test_unknown_architecture_suggests_and_lists():
    listing = r"unknown architecture 'wrm'; did you mean 'wrn'\? known: timm:<model name>, vgg, wrn"
    with pytest.raises(ValueError, match=listing):
        _build("wrm")
    with pytest.raises(ValueError, match="add a model name after the colon"):
        _build("timm:")


def test_registered_architecture_is_built_and_duplicates_are_refused(monkeypatch):
    monkeypatch.setattr(models, "_BUILDERS", dict(models._BUILDERS))
    calls = []

    def build_tiny(arch, hp, num_classes, input_shape):
        calls.append((arch.name, num_classes, input_shape))
        return nn.Linear(input_shape[0], num_classes)

    register_architecture("tiny_net", build_tiny)
    assert "tiny_net" in list_architectures()
    assert isinstance(_build("tiny_net", input_shape=[3, 8, 8]), nn.Linear)
    assert calls == [("tiny_net", 5, (3, 8, 8))]
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("vgg", build_tiny)
    with pytest.raises(ValueError, match="snake_case"):
        register_architecture("Tiny-Net", build_tiny)
