"""Representations: the per-neuron values every intraclass-clustering measure reads (SPEC §1).

A *layer* is a BatchNorm whose output feeds a ReLU; its *pre-activations* are that BatchNorm's
output with the model in eval mode, its *activations* the ReLU of them. A convolutional layer's
output (N, C, H, W) is reduced to one value per channel, a *neuron*, by global max pooling over
H and W (Carbonnelle & De Vleeschouwer, ICLR 2021, Section 2.2), giving an (N, C) matrix per layer.

Which BatchNorms feed a ReLU is read from the model's torch.fx graph, so a BatchNorm whose output
goes elsewhere first (timm's ResNet ``bn2``, added to the shortcut before its ReLU) is not a layer.
timm fuses BatchNorm and activation into one module (``BatchNormAct2d`` and its relatives: a
BatchNorm subclass carrying the activation as ``.act``); such a module is a layer when ``.act`` is a
ReLU, and its pre-activation is the input of ``.act``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.hooks import RemovableHandle

from icc_bench.models import trace_graph

__all__ = ["Representations", "compute_representations", "probe_layers", "stratified_indices"]


@dataclass
class Representations:
    """Per-layer neuron values of one model on one probe sample.

    Attributes
    ----------
    preactivations : list of Tensor
        One (n_samples, n_neurons_l) float32 tensor per layer: the BatchNorm output, global max
        pooled over H, W.
    activations : list of Tensor
        ReLU of the same, same shapes.
    layer_names : list of str
        Module names of the BatchNorm layers, in ``model.named_modules()`` order.
    """

    preactivations: list[Tensor]
    activations: list[Tensor]
    layer_names: list[str]

    @property
    def n_samples(self) -> int:
        """Rows of every per-layer matrix (0 when there is no layer)."""
        return self.preactivations[0].shape[0] if self.preactivations else 0

    @property
    def n_neurons(self) -> int:
        """Neurons over all layers: the sum of the per-layer column counts."""
        return sum(p.shape[1] for p in self.preactivations)


# ---------------------------------------------------------------------------------------------
# Which modules are probe layers


def _fused_activation(module: nn.Module) -> nn.Module | None:
    """The activation a timm-style fused BatchNorm applies itself, or None for a plain one."""
    act = getattr(module, "act", None) if isinstance(module, _BatchNorm) else None
    return None if isinstance(act, nn.Identity) else act


def _is_plain_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm whose output is its normalized value (no activation of its own)."""
    return isinstance(module, _BatchNorm) and _fused_activation(module) is None


def _is_pass_through(module: nn.Module) -> bool:
    """Identity in eval mode, where the probe runs: the value a ReLU gets through it is unchanged."""
    return isinstance(module, (nn.Identity, _DropoutNd))


_RELU_FUNCTIONS = frozenset({torch.relu, torch.relu_, nn.functional.relu, nn.functional.relu_})
_RELU_METHODS = frozenset({"relu", "relu_"})


def _is_relu_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def _batchnorms_feeding_relu_traced(model: nn.Module) -> set[str]:
    """Names of plain BatchNorms whose output reaches a ReLU, read from the torch.fx graph."""
    graph = trace_graph(model, leaf_types=(_BatchNorm,))
    modules = dict(model.named_modules())
    names = set()
    for node in graph.nodes:
        if not _is_relu_node(node, modules) or not node.args:
            continue
        source = node.args[0]
        while isinstance(source, fx.Node) and source.op == "call_module" and _is_pass_through(modules[source.target]):
            source = source.args[0]
        if isinstance(source, fx.Node) and source.op == "call_module" and _is_plain_batchnorm(modules[source.target]):
            names.add(source.target)
    return names


def _batchnorms_feeding_relu_by_order(model: nn.Module) -> set[str]:
    """Names of plain BatchNorms registered right before a ReLU (pass-through modules skipped).

    The fallback for models torch.fx cannot trace. Registration order is often, not always,
    execution order: a block that registers ``bn2`` then ``act2`` but adds a shortcut in between
    is a false positive.
    """
    names = set()
    pending = None
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            pending = name if _is_plain_batchnorm(module) else None
        elif any(module.children()) or _is_pass_through(module):
            continue  # containers and identities sit between a BatchNorm and its ReLU in this order
        elif isinstance(module, nn.ReLU) and pending is not None:
            names.add(pending)
            pending = None
        else:
            pending = None
    return names


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside; every submodule's own train/eval flag restored after, even on error."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def probe_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorms whose output feeds a ReLU (SPEC §1), in ``named_modules()`` order.

    A plain BatchNorm is a layer when, in the eval-mode torch.fx graph, a ReLU (module, function or
    method) takes its output, possibly through identities and dropouts (identities in eval mode).
    A timm fused BatchNorm-activation module is a layer when its own ``.act`` is a ReLU. For a
    model torch.fx cannot trace, a warning is issued and a plain BatchNorm is taken when a ReLU
    module is the next leaf module registered after it.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of (str, nn.Module)
        Module name and BatchNorm module of each layer; empty when the model has none.
    """
    fused = {name for name, module in model.named_modules() if isinstance(_fused_activation(module), nn.ReLU)}
    with _eval_mode(model):  # branches on self.training (dropout, DropBlock) must take their eval path
        try:
            plain = _batchnorms_feeding_relu_traced(model)
        except Exception as error:  # torch.fx raises many types; any of them means "not traceable"
            warnings.warn(
                f"probe_layers: torch.fx cannot trace {type(model).__name__} ({error}); taking each BatchNorm "
                "registered right before a ReLU module, which can misjudge blocks that add a shortcut in between",
                stacklevel=2,
            )
            plain = _batchnorms_feeding_relu_by_order(model)
    layers = fused | plain
    return [(name, module) for name, module in model.named_modules() if name in layers]


# ---------------------------------------------------------------------------------------------
# Recording


def _register_recorder(module: nn.Module, record: Callable[[Tensor], None]) -> RemovableHandle:
    activation = _fused_activation(module)
    if activation is not None:
        # timm fused module: the input of its activation is the normalized value (after timm's
        # optional drop layer, an identity in eval mode).
        return activation.register_forward_pre_hook(lambda _module, args: record(args[0]))
    return module.register_forward_hook(lambda _module, _args, output: record(output))


def _global_max_pool(output: Tensor) -> Tensor:
    """(N, C, *spatial) -> (N, C) by the max over spatial positions; (N, C) copied as is, float32.

    Runs inside the hook, before the next module: an inplace ReLU after the BatchNorm (timm's
    default) would otherwise overwrite the recorded values, hence the copy of an (N, C) output.
    """
    pooled = output.amax(dim=tuple(range(2, output.ndim))) if output.ndim > 2 else output.clone()
    return pooled.float()


def _chunk_recorder(chunks: list[Tensor]) -> Callable[[Tensor], None]:
    """A hook callback appending the pooled value of each forward pass to ``chunks`` (one list per layer)."""
    return lambda output: chunks.append(_global_max_pool(output))


def compute_representations(model: nn.Module, x: Tensor, *, batch_size: int = 500) -> Representations:
    """Pre-activations and activations of every probe layer on the inputs ``x``.

    The model runs in eval mode (BatchNorm uses its running statistics, dropout is off) without
    gradients, in batches of ``batch_size``; every module's train/eval flag is restored after, and
    the hooks are removed, even on error. The model's parameters and buffers are not modified.

    Parameters
    ----------
    model : nn.Module
        A network with at least one BatchNorm feeding a ReLU.
    x : Tensor
        (N, C, H, W) inputs, N >= 1, on any device; moved batch by batch to the model's device.
    batch_size : int
        Samples per forward pass, >= 1 (a memory knob; results do not depend on it).

    Returns
    -------
    Representations
        Per layer, (N, n_neurons_l) float32 tensors on the model's device.
    """
    if batch_size < 1:
        raise ValueError(f"compute_representations: batch_size must be at least 1, got {batch_size}")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"compute_representations: x must hold at least one sample, got shape {tuple(x.shape)}")
    layers = probe_layers(model)
    if not layers:
        raise ValueError(
            f"compute_representations: {type(model).__name__} has no BatchNorm whose output feeds a ReLU, "
            "so it has no probe layer (SPEC §1); use a network with BatchNorm-ReLU pairs"
        )
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    recorded: list[list[Tensor]] = [[] for _ in layers]
    handles = []
    with _eval_mode(model), torch.no_grad():
        try:
            for (_, module), chunks in zip(layers, recorded):
                handles.append(_register_recorder(module, _chunk_recorder(chunks)))
            for batch_number, start in enumerate(range(0, len(x), batch_size), start=1):
                model(x[start : start + batch_size].to(device))
                for (name, _), chunks in zip(layers, recorded):
                    if len(chunks) != batch_number:
                        raise RuntimeError(
                            f"compute_representations: probe layer '{name}' ran {len(chunks) - batch_number + 1} "
                            "times in one forward pass; a BatchNorm must run exactly once to be probed"
                        )
        finally:
            for handle in handles:
                handle.remove()
    preactivations = [torch.cat(chunks) for chunks in recorded]  # each (N, n_neurons_l)
    # Max pooling commutes with ReLU (ReLU is nondecreasing: max relu(z) = relu(max z)), so the
    # ReLU of the pooled pre-activation is the pooled activation.
    activations = [torch.relu(p) for p in preactivations]
    return Representations(preactivations, activations, [name for name, _ in layers])


def stratified_indices(labels: Tensor, per_class: int | None, seed: int) -> Tensor:
    """Indices of a stratified random sample: ``per_class`` samples of each class, sorted.

    A class with at most ``per_class`` samples gives all of them. The draw depends only on
    ``labels``, ``per_class`` and ``seed``, so the same seed gives the same sample (SPEC §1).

    Parameters
    ----------
    labels : Tensor
        (N,) integer class labels.
    per_class : int or None
        Samples per class, >= 1; None takes every index.
    seed : int
        Seed of the draw.

    Returns
    -------
    Tensor
        (M,) int64 indices into ``labels``, strictly increasing, on ``labels``'s device.
    """
    if labels.ndim != 1:
        raise ValueError(f"stratified_indices: labels must be 1-D, got shape {tuple(labels.shape)}")
    if per_class is None:
        return torch.arange(len(labels), device=labels.device)
    if per_class < 1:
        raise ValueError(f"stratified_indices: per_class must be at least 1 or None (all), got {per_class}")
    labels_cpu = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    chosen = [torch.empty(0, dtype=torch.int64)]  # so that no labels at all give no indices
    for label in torch.unique(labels_cpu):  # sorted, so the draws happen in a fixed order
        members = torch.nonzero(labels_cpu == label).flatten()
        if len(members) > per_class:
            members = members[torch.randperm(len(members), generator=generator)[:per_class]]
        chosen.append(members)
    return torch.cat(chosen).sort().values.to(labels.device)
