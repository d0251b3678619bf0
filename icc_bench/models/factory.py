"""A network of the user's own, ``factory:<module>:<function>``: the architectures ``icc-bench import``
records for checkpoints trained elsewhere.

It lives with the other model builders so that the zoo rebuilds an imported model the way it
rebuilds a VGG, without reaching up into the importer. Whether a record may name a factory at all
is the zoo's decision (:meth:`icc_bench.zoo.Zoo.load_model`: only imported records, and only a
factory the caller allows again).
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from torch import nn

#: Architecture names of the form ``factory:<module>:<function>`` are built by a user's function.
FACTORY_PREFIX = "factory:"
_FACTORY = re.compile(r"factory:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def build_factory_model(name: str, options: dict[str, Any], num_classes: int) -> nn.Module:
    """Build ``factory:<module>:<function>``: ``function(num_classes=num_classes, **options)``.

    The function must be a plain Python function (not a class, not a builtin) with a parameter
    named ``num_classes``: a zoo record names the factory, and this keeps a record from calling an
    arbitrary callable such as ``os.system``. Raises ``ValueError`` with one sentence otherwise.
    """
    match = _FACTORY.fullmatch(name)
    if match is None:
        raise ValueError(f"architecture '{name}': write a factory as factory:<module>:<function>, e.g. factory:my_nets:make_net")
    module_name, function_name = match.groups()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # importing runs the module: anything may go wrong there
        raise ValueError(f"architecture '{name}': cannot import module '{module_name}' ({type(e).__name__}: {e}); "
                         "put its folder on PYTHONPATH") from None
    factory = getattr(module, function_name, None)
    if not inspect.isfunction(factory):
        raise ValueError(f"architecture '{name}': module '{module_name}' has no Python function '{function_name}'")
    signature = inspect.signature(factory)
    named = {n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [k for k in options if k not in named and not takes_any]
    if "num_classes" not in named or unknown:
        missing = "a parameter num_classes" if "num_classes" not in named else f"the option '{unknown[0]}'"
        raise ValueError(f"architecture '{name}': {function_name}{signature} does not take {missing}")
    try:
        model = factory(num_classes=num_classes, **options)
    except Exception as e:  # the user's code: report its failure as this row's problem
        raise ValueError(f"architecture '{name}': {function_name}(num_classes={num_classes}, **{options}) raised "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"architecture '{name}': {function_name} returned a {type(model).__name__}, not an nn.Module")
    return model
