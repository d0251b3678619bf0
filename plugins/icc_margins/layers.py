"""Which modules output a probe layer's activations, and which of them the layer margin reads.

A probe layer (SPEC §1) is a BatchNorm whose output feeds a ReLU; its *activations* are that
ReLU's output. The margin at a layer differentiates with respect to those activations, so it
needs the ReLU as a module whose output a hook can read: for a plain BatchNorm, the ReLU module
that is called on the BatchNorm's output tensor itself (found by one forward pass); for timm's
fused BatchNorm-activation modules, their ``.act``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from icc_bench.probe import probe_layers

__all__ = ["activation_modules", "pick_by_depth"]


def activation_modules(model: nn.Module, x: Tensor) -> list[tuple[str, nn.Module | None]]:
    """For each probe layer, in order: ``(BatchNorm name, the ReLU module applied to its output)``.

    The module is None when the ReLU is not a module called on the BatchNorm's output tensor (a
    functional ``relu``, or something in between).

    Parameters
    ----------
    model : nn.Module
        In eval mode.
    x : Tensor
        (1, ...) one input, to run the forward pass that connects BatchNorms to ReLUs.
    """
    layers = probe_layers(model)
    outputs: dict[str, Tensor] = {}
    found: dict[str, nn.Module] = {}
    handles = []
    for name, bn in layers:
        act = getattr(bn, "act", None)
        if isinstance(act, nn.ReLU):  # timm fused BatchNorm + activation
            found[name] = act
        else:
            handles.append(bn.register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out)))
    relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]

    def pre_hook(module: nn.Module, args: tuple) -> None:
        for name, out in outputs.items():
            if args and args[0] is out and name not in found:
                found[name] = module

    handles += [m.register_forward_pre_hook(pre_hook) for _, m in relus]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, found.get(name)) for name, _ in layers]


def pick_by_depth(n_layers: int, fractions: Sequence[float]) -> list[int]:
    """Indices ``ceil(f * n_layers) - 1`` of the layers at the given fractions of depth, distinct.

    >>> pick_by_depth(8, (0.25, 0.5, 0.75))
    [1, 3, 5]
    """
    return sorted({max(math.ceil(f * n_layers) - 1, 0) for f in fractions}) if n_layers else []
