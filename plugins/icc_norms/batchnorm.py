"""Jiang et al.'s BatchNorm conversion: a network without BatchNorm that computes the same function.

In eval mode a BatchNorm is a per-channel affine map, ``BN(z) = a * z + b`` with

    a = gamma / sqrt(running_var + eps),    b = beta - a * running_mean

(``gamma = 1`` and ``beta = 0`` without affine parameters). When its input is the output of a
convolution or linear layer ``z = W x + c`` (``c = 0`` without bias) that feeds nothing else,
the two compose into one layer of the same kind,

    BN(W x + c) = (a . W) x + (a * c + b),

``a . W`` scaling output channel ``k`` of ``W`` by ``a_k``. The norm measures of Jiang et al.
(2020, Appendix C.2, "we ... remove the batch normalization by folding it into the preceding
layer"; their code re-parametrises every BatchNorm into the convolution registered before it)
read the folded weights ``a . W``, so that a network's norms do not depend on where BatchNorm
keeps its scale.

Readings taken where the paper and its reference code are silent:

- A pair is folded only when the torch.fx graph shows the convolution's (or linear layer's)
  output going to the BatchNorm and nowhere else, and that module is called once. The reference
  code pairs a BatchNorm with the convolution *registered* before it, which is wrong for
  pre-activation residual networks (our Wide ResNet's ``bn1`` follows an addition).
- A BatchNorm that cannot be folded (a pre-activation ``bn1``, the final BN of a WRN) stays in
  the network as its affine map ``a * z + b`` (:class:`ChannelAffine`). It is not a weight layer
  for the norm measures (the reference code drops every parameter named ``bn``); the path norm,
  a forward pass, squares its ``a`` and ``b`` like every other parameter.
- A model torch.fx cannot trace gets no folding at all (every BatchNorm becomes a
  :class:`ChannelAffine`), with a warning.
- The conversion is checked, not assumed: :func:`convert_batchnorm` compares the converted
  network's outputs with the model's on the inputs it is given and raises if they differ.

References
----------
Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to find
them", ICLR 2020, Appendix C.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from icc_bench.models import trace_graph

__all__ = ["ChannelAffine", "convert_batchnorm", "foldable_pairs", "weight_layers"]

#: Modules whose weight is a layer for the norm measures, and into which a BatchNorm can be folded.
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class ChannelAffine(nn.Module):
    """``a * z + b`` per channel (dimension 1): an eval-mode BatchNorm that could not be folded.

    Parameters
    ----------
    scale, shift : Tensor
        (channels,) ``a`` and ``b``; kept as parameters so that the path norm squares them.
    """

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone())
        self.shift = nn.Parameter(shift.detach().clone())

    def forward(self, z: Tensor) -> Tensor:
        view = (1, -1) + (1,) * (z.ndim - 2)  # (1, C, 1, ...) broadcasts over batch and space
        return z * self.scale.view(view) + self.shift.view(view)


def _affine_of(bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """``(a, b)`` of an eval-mode BatchNorm, in its parameters' dtype."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError(
            f"{type(bn).__name__} without running statistics (track_running_stats=False) normalizes with batch "
            "statistics even in eval mode, so it is no fixed affine map and cannot be converted"
        )
    a = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    b = -a * bn.running_mean
    if bn.bias is not None:
        b = b + bn.bias
    return a.detach(), b.detach()


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer name, BatchNorm name)`` for each BatchNorm that takes a weight layer's sole output.

    Read from the torch.fx graph of ``model``: the BatchNorm's input node is a call of a
    :data:`WEIGHT_LAYERS` module that is called once in the graph and whose output has no other
    user. Raises whatever torch.fx raises for a model it cannot trace.
    """
    graph = trace_graph(model, leaf_types=(_BatchNorm,))
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm) or not node.args:
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], WEIGHT_LAYERS)
            and calls[source.target] == 1
            and len(source.users) == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def convert_batchnorm(
    model: nn.Module, check_inputs: Tensor | None = None, *, fold: bool = True, rtol: float = 1e-4
) -> nn.Module:
    """A float64 copy of ``model`` without BatchNorm that computes the same eval-mode function.

    Each BatchNorm of :func:`foldable_pairs` is folded into its layer (``W <- a . W``,
    ``c <- a * c + b``) and replaced by an identity; every other BatchNorm becomes a
    :class:`ChannelAffine` ``a * z + b``. ``model`` itself is not modified.

    Parameters
    ----------
    model : nn.Module
        The network; its BatchNorms are read with their running statistics (eval mode).
    check_inputs : Tensor, optional
        (n, ...) inputs on which the converted copy must give the model's outputs; None skips the
        check (tests of the conversion itself).
    fold : bool
        False folds nothing: every BatchNorm becomes a :class:`ChannelAffine`.
    rtol : float
        Largest allowed ``max |converted - model| / max(max |model|, 1)`` on ``check_inputs``;
        the model runs in its own dtype (float32), so this is float32 round-off, not float64.

    Returns
    -------
    nn.Module
        The converted copy, float64, eval mode, on the model's device, gradients off.

    Raises
    ------
    ValueError
        When the copy's outputs differ from the model's on ``check_inputs``, or a BatchNorm has no
        running statistics.
    """
    converted = copy.deepcopy(model).double().eval()
    try:
        pairs = foldable_pairs(converted) if fold else []
    except Exception as error:  # torch.fx raises many types; any of them means "not traceable"
        warnings.warn(
            f"convert_batchnorm: torch.fx cannot trace {type(model).__name__} ({error}); no BatchNorm is folded, "
            "each stays as its own per-channel affine map",
            stacklevel=2,
        )
        pairs = []
    modules = dict(converted.named_modules())
    folded = set()
    with torch.no_grad():
        for layer_name, bn_name in pairs:
            layer, bn = modules[layer_name], modules[bn_name]
            a, b = _affine_of(bn)
            shape = (-1,) + (1,) * (layer.weight.ndim - 1)  # output channels first, for conv and linear alike
            layer.weight.mul_(a.view(shape))
            bias = b if layer.bias is None else a * layer.bias + b
            layer.bias = nn.Parameter(bias.clone())
            _replace(converted, bn_name, nn.Identity())
            folded.add(bn_name)
        for name, module in modules.items():
            if isinstance(module, _BatchNorm) and name not in folded:
                _replace(converted, name, ChannelAffine(*_affine_of(module)))
    converted.requires_grad_(False)
    if check_inputs is not None:
        _check_same_function(model, converted, check_inputs, rtol)
    return converted


def _check_same_function(model: nn.Module, converted: nn.Module, x: Tensor, rtol: float) -> None:
    with torch.no_grad():
        expected = model(x).double()
        got = converted(x.double())
    scale = max(float(expected.abs().max()), 1.0)
    error = float((got - expected).abs().max()) / scale
    if not error <= rtol:  # also catches NaN
        raise ValueError(
            f"the BatchNorm-free copy of {type(model).__name__} computes another function (relative error {error:.2e} "
            f"> {rtol:g}); a BatchNorm was folded into a layer whose output also goes elsewhere"
        )


def weight_layers(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(name, W)`` of every convolution and linear layer, ``W`` reshaped to (out, in * kernel).

    In ``named_modules()`` order. Jiang et al.'s reading of a convolution as a matrix: output
    channels by (input channels x kernel positions), as their reference code reshapes it.
    """
    return [
        (name, module.weight.detach().reshape(module.weight.shape[0], -1))
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_LAYERS)
    ]
