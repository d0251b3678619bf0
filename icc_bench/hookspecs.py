"""The extension API: every hook a plugin can implement.

A plugin is a module (or any object) with functions named ``icc_bench_*`` and marked with
``@icc_bench.hookimpl``; see the ``icc_bench`` package docstring for a worked example. A plugin
implements any subset of the hooks below, with any subset of each hook's arguments.

Lifecycle
---------
Start-up (``icc_bench.plugins.load_plugins``), once per process, before any command runs:

1. plugins are found: the built-ins, then the ``icc_bench`` entry points of installed packages
   (by name), then each ``--plugin`` in the order given;
2. the registration hooks run, hook by hook in the order of this module, and within one hook
   plugin by plugin in that same order;
3. the measure registry is frozen.

A plugin whose import fails or whose hook raises is reported by name with the error and skipped;
the others still load. Measures a failing hook had added are removed again; datasets and
architectures are registered in their own modules and stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from icc_bench.measure import Measure
    from icc_bench.registry import ArchitectureRegistry, DatasetRegistry, Registry

hookspec = pluggy.HookspecMarker("icc_bench")


# -- start-up: registration --------------------------------------------------------------------


@hookspec
def icc_bench_register_datasets(registry: DatasetRegistry) -> None:
    """Register datasets, each under a snake_case name that population specs can use.

    Called once at start-up, before architectures and measures are registered.

    Parameters
    ----------
    registry : DatasetRegistry
        Call ``registry.add(name, options_model, builder, description)`` once per dataset:
        ``options_model`` is a frozen subclass of ``icc_bench.data.DatasetOptions``, ``builder``
        takes ``(options, data_dir)`` and returns an ``ImageDataset`` of unnormalized float32
        images, ``description`` is one line. ``icc_bench.data.register_dataset`` documents the
        checks.

    Returns
    -------
    None
    """


@hookspec
def icc_bench_register_architectures(registry: ArchitectureRegistry) -> None:
    """Register network architectures, each under a name that ``[architecture] name`` can use.

    Called once at start-up, after datasets and before measures.

    Parameters
    ----------
    registry : ArchitectureRegistry
        Call ``registry.add(name, builder)`` once per architecture; ``builder`` receives what
        ``icc_bench.models.build_model`` passes it (see ``icc_bench.models.register_architecture``).
        For the probe to see its layers, put a BatchNorm before every ReLU (SPEC §1).

    Returns
    -------
    None
    """


@hookspec
def icc_bench_register_measures(registry: Registry[Measure]) -> None:
    """Register generalization measures.

    Called once at start-up, after datasets and architectures; the registry is frozen afterwards.

    Parameters
    ----------
    registry : Registry
        Call ``registry.add(Measure(...))`` once per measure. ``add`` checks the name (snake_case,
        not yet taken) and attributes the measure to this plugin; ``Measure`` checks its own
        fields (family, direction, ``needs_hierarchy``, ``fn(ctx, settings)``, frozen settings).

    Returns
    -------
    None
    """
