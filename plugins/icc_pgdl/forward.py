"""Forward passes that read what the winners read: logits, the first convolution's output, the
inputs of the last weight layers.

Everything runs without gradients and leaves the model as it was: its train/eval flags are not
touched (the harness hands measures a model in eval mode), and every hook is removed, even on
error. A *weight layer* is a convolution or a linear layer (``nn.modules.conv._ConvNd``,
``nn.Linear``): the modules that hold the Keras ``Conv2D`` / ``Dense`` weights the winners'
layer indices point to. Which one is first or last is read from the order in which a forward
pass calls them, not from the order the model registers them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from icc_bench import NotApplicable

_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


class _FirstConvolutionReached(Exception):
    """Raised by the hook on the first convolution, to skip the rest of the forward pass."""


def logits(model: nn.Module, x: Tensor, *, batch_size: int) -> Tensor:
    """(n, classes) float32 outputs of ``model`` on ``x``, ``batch_size`` images per pass."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    with torch.no_grad():
        return torch.cat([model(chunk.to(device)).float() for chunk in x.split(batch_size)])


def first_convolution_output(model: nn.Module, x: Tensor, *, batch_size: int) -> Tensor:
    """(n, C, H, W) output of the first convolution a forward pass calls, on each image of ``x``.

    The forward pass stops there (the hook raises and the exception is caught), so the cost is
    that of the network's stem only.

    Raises
    ------
    NotApplicable
        When the model has no convolution, or a forward pass calls none.
    """
    convolutions = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convolutions:
        raise NotApplicable(f"{type(model).__name__} has no convolution, and this measure reads the first one's output")
    captured: list[Tensor] = []

    def stop_at_first(_module: nn.Module, _args: tuple, output: Tensor) -> None:
        captured.append(output.detach().float())
        raise _FirstConvolutionReached

    handles = [m.register_forward_hook(stop_at_first) for m in convolutions]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            for chunk in x.split(batch_size):
                try:
                    model(chunk.to(parameter.device))
                except _FirstConvolutionReached:
                    continue
                raise NotApplicable(f"a forward pass of {type(model).__name__} called none of its convolutions")
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(captured)


def last_weight_layer_inputs(model: nn.Module, x: Tensor, n_layers: int) -> tuple[list[Tensor], Tensor]:
    """The inputs of the last ``n_layers`` weight-layer calls of one forward pass, and its output.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (n, ...)
        One batch (every image goes through in a single pass).
    n_layers : int
        Weight-layer calls counted back from the output; fewer are returned when the forward pass
        makes fewer.

    Returns
    -------
    inputs : list of Tensor
        Each (n, ...) float32, in call order.
    output : Tensor of shape (n, classes)
    """
    calls: list[nn.Module] = []
    handles = [m.register_forward_pre_hook(_recorder(calls)) for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model(x[:1].to(parameter.device))  # which weight layers run last, in call order
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise NotApplicable(f"a forward pass of {type(model).__name__} calls no convolution or linear layer")
    wanted = set(calls[-n_layers:])
    recorded: list[Tensor] = []
    handles = [m.register_forward_pre_hook(_input_recorder(recorded)) for m in wanted]
    try:
        with torch.no_grad():
            output = model(x.to(parameter.device)).float()
    finally:
        for handle in handles:
            handle.remove()
    return recorded[-n_layers:], output


def _recorder(calls: list[nn.Module]) -> Callable:
    return lambda module, _args: calls.append(module)


def _input_recorder(recorded: list[Tensor]) -> Callable:
    return lambda _module, args: recorded.append(args[0].detach().float())
