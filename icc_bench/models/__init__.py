"""Networks by name: the paper's VGG and Wide ResNet, any timm model, and whatever plugins add.

``build_model(arch, hp, num_classes, input_shape)`` looks ``arch.name`` up in a small registry of
builders. A name registered with a trailing colon is a family: ``timm:`` builds every
``timm:<model name>``, its builder reading the part after the colon.

Built in:

- ``vgg``: :mod:`icc_bench.models.vgg` (9 layers at depth x1, 13 at x1.5).
- ``wrn``: :mod:`icc_bench.models.wrn` (18 layers at depth x1, 26 at x1.5).
- ``timm:<model name>``: :mod:`icc_bench.models.timm_models` (never pretrained).

``count_layers(model)`` gives the depth in the papers' sense (convolution and linear layers on the
longest path), used by tests and reports.
"""

from __future__ import annotations

import difflib
import re
import sys
import warnings
from collections.abc import Callable

from torch import fx, nn

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.models.timm_models import TIMM_PREFIX, build_timm
from icc_bench.models.vgg import VGG, build_vgg
from icc_bench.models.wrn import WideResNet, build_wrn

__all__ = [
    "ArchitectureBuilder",
    "VGG",
    "WideResNet",
    "build_model",
    "count_layers",
    "list_architectures",
    "register_architecture",
    "trace_graph",
]

#: ``builder(arch, hp, num_classes, input_shape) -> nn.Module``; input_shape is (C, H, W).
ArchitectureBuilder = Callable[[ArchitectureSpec, HyperParams, int, tuple[int, int, int]], nn.Module]

_BUILDERS: dict[str, ArchitectureBuilder] = {}
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*:?")


def register_architecture(name: str, builder: ArchitectureBuilder) -> None:
    """Make ``name`` buildable by :func:`build_model`.

    Parameters
    ----------
    name : str
        snake_case, as written in a population spec's ``architecture.name``. A trailing colon
        (``"timm:"``) registers a family: every ``name<suffix>`` goes to ``builder``.
    builder : callable
        ``builder(arch, hp, num_classes, input_shape) -> nn.Module``; it validates what it reads
        from ``arch`` and ``hp`` and raises ``ValueError`` with one clear sentence otherwise.
    """
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"architecture name '{name}' must be snake_case (optionally ending in ':' for a family)")
    if name in _BUILDERS:
        raise ValueError(f"architecture '{name}' is already registered; choose another name")
    _BUILDERS[name] = builder


def list_architectures() -> list[str]:
    """Registered names, sorted; a family is listed with its trailing colon (``timm:``)."""
    return sorted(_BUILDERS)


def _lookup(name: str) -> ArchitectureBuilder:
    family, colon, member = name.partition(":")
    key = family + colon
    if key in _BUILDERS:
        if colon and not member:
            raise ValueError(f"architecture '{name}': add a model name after the colon, as in 'timm:resnet18'")
        return _BUILDERS[key]
    known = [n + "<model name>" if n.endswith(":") else n for n in list_architectures()]
    close = difflib.get_close_matches(key, list_architectures(), n=1)
    hint = f"did you mean '{close[0]}'? " if close else "did you mean one of these? "
    raise ValueError(f"unknown architecture '{name}'; {hint}known: {', '.join(known)}")


def build_model(
    arch: ArchitectureSpec, hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """Build the untrained network for one configuration.

    Initialization is PyTorch's default, so ``torch.manual_seed(s)`` before this call fixes the
    weights.

    Parameters
    ----------
    arch : ArchitectureSpec
        Which network (``vgg``, ``wrn``, ``timm:<model name>`` or a registered plugin name).
    hp : HyperParams
        Uses ``width``, ``depth`` and ``dropout``.
    num_classes : int
        Outputs of the classifier (the training labels: superclasses when hierarchical).
    input_shape : tuple of int
        One image's (C, H, W).
    """
    if num_classes < 1:
        raise ValueError(f"architecture '{arch.name}': num_classes must be at least 1, got {num_classes}")
    return _lookup(arch.name)(arch, hp, num_classes, tuple(input_shape))


_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
# Weight layers a traced model calls as functions (a custom layer whose forward calls F.conv2d).
_WEIGHT_FUNCTIONS = frozenset(
    {nn.functional.linear, nn.functional.conv1d, nn.functional.conv2d, nn.functional.conv3d}
)


def trace_graph(model: nn.Module, leaf_types: tuple[type[nn.Module], ...] = ()) -> fx.Graph:
    """The torch.fx graph of ``model``, keeping instances of ``leaf_types`` as single module calls.

    Modules from ``torch.nn`` are leaves already; ``leaf_types`` makes their subclasses defined
    elsewhere (timm's ``BatchNormAct2d``, its ``Linear``) leaves too, so the graph names them. When
    timm is loaded, its registered no-trace modules and functions are honoured, as timm's own
    feature extraction does. Raises whatever torch.fx raises for an untraceable model.
    """
    timm_layers = sys.modules.get("timm.layers")  # a model holding timm modules implies it is imported
    no_trace_modules = tuple(timm_layers.get_notrace_modules()) if timm_layers else ()
    no_trace_functions = tuple(timm_layers.get_notrace_functions()) if timm_layers else ()
    leaves = tuple(leaf_types) + no_trace_modules

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
            return isinstance(module, leaves) or super().is_leaf_module(module, qualified_name)

    return _Tracer(autowrap_functions=tuple(f for f in no_trace_functions if callable(f))).trace(model)


def count_layers(model: nn.Module) -> int:
    """Depth as the papers count it: convolution and linear layers on the longest input-output path.

    Projection shortcuts run beside the convolutions of their block, so they do not add to the
    depth (He et al. 2016; Zagoruyko & Komodakis 2016): the paper's VGG has 9 or 13 layers, its
    Wide ResNet 18 or 26, timm's resnet18 18. Computed on the torch.fx graph. A model torch.fx
    cannot trace gets, with a warning, the number of convolution and linear modules instead, which
    counts projection shortcuts too.

    Returns
    -------
    int
        Number of weight layers, >= 0.
    """
    try:
        graph = trace_graph(model, leaf_types=_WEIGHT_LAYERS)
    except Exception as error:  # torch.fx raises many types; any of them means "not traceable"
        warnings.warn(
            f"count_layers: torch.fx cannot trace {type(model).__name__} ({error}); "
            "counting every convolution and linear module, projection shortcuts included",
            stacklevel=2,
        )
        return sum(isinstance(m, _WEIGHT_LAYERS) for m in model.modules())
    modules = dict(model.named_modules())
    depth: dict[fx.Node, int] = {}
    for node in graph.nodes:  # graph nodes are in topological order
        below = max((depth[n] for n in node.all_input_nodes), default=0)
        is_weight_layer = node.op == "call_module" and isinstance(modules[node.target], _WEIGHT_LAYERS)
        is_weight_layer |= node.op == "call_function" and node.target in _WEIGHT_FUNCTIONS
        depth[node] = below + is_weight_layer
    output = next(n for n in reversed(graph.nodes) if n.op == "output")
    return depth[output]


register_architecture("vgg", build_vgg)
register_architecture("wrn", build_wrn)
register_architecture(TIMM_PREFIX, build_timm)
