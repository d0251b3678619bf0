"""The registries that registration hooks receive.

:class:`Registry` holds the measures: ``add`` validates on insert and refuses duplicates (naming the
plugin that got there first), ``get`` answers an unknown name with "did you mean ..." and the list
of what is there, ``list`` selects by fnmatch patterns in registration order, and ``freeze`` closes
it once the plugins have loaded. Each item records the :class:`PluginInfo` of the plugin that
registered it, so every value can say where its measure came from.

Datasets and architectures live in their own modules' registries (``icc_bench.data``,
``icc_bench.models``); :class:`DatasetRegistry` and :class:`ArchitectureRegistry` are the thin
adapters their hooks receive, importing those modules only when a plugin uses them.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")  # matched in full


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from.

    Attributes
    ----------
    name : str
        The plugin's name: its entry-point name, its module name (``--plugin package.module``) or
        its file or folder name without ``.py`` (``--plugin path/my_measure.py``). This is the name
        ``ICC_BENCH_DISABLE_PLUGINS`` matches.
    origin : {"entry point", "source checkout", "module", "file"}
        How it was found; "source checkout" is a built-in imported by module name because the
        package is not installed, so its entry point does not exist yet.
    location : str
        The module name, or the file path for ``--plugin`` files.
    distribution, version : str or None
        The installed distribution that provides it, and that distribution's version.
    """

    name: str
    origin: Literal["entry point", "source checkout", "module", "file"]
    location: str
    distribution: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        """Short provenance for tables: ``"icc-bench 0.1.0"``, or the file path of a file plugin."""
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        if self.origin == "file":
            return self.location
        return f"{self.location} {self.version}" if self.version else self.location

    def describe(self) -> str:
        """For messages: ``plugin 'icc_intraclass' (icc-bench 0.1.0)``."""
        return f"plugin {self.name!r} ({self.label})"


class Named(Protocol):
    """What a registry holds: a frozen dataclass with a ``name`` and a ``plugin`` field."""

    name: str
    plugin: PluginInfo | None


T = TypeVar("T", bound=Named)


class RegistrationError(ValueError):
    """An ``add`` the registry refuses: a malformed name, a duplicate, or a frozen registry."""


class UnknownMeasureError(KeyError):
    """A measure name (or pattern) the registry does not hold; the message suggests and lists names."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message  # KeyError's str() would print the repr, quotes and all


class Registry(Generic[T]):
    """Measures by name, in registration order. What ``icc_bench_register_measures`` receives.

    Generic in its item type (anything with ``.name`` and a ``.plugin`` dataclass field); the
    items' own fields are validated when the items are constructed (see ``Measure``).
    """

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._frozen = False
        self._plugin: PluginInfo | None = None

    def add(self, item: T) -> T:
        """Register ``item`` under ``item.name`` and return it with its plugin filled in.

        Raises
        ------
        TypeError
            When ``item`` is not a registrable object (for instance a bare function).
        RegistrationError
            When the name is not snake_case, is already taken, or the registry is frozen.
        """
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not dataclasses.is_dataclass(item):
            raise TypeError(
                f"registry.add() takes a Measure(...), got {type(item).__name__} {item!r}; "
                "wrap a function as Measure(name=..., family=..., fn=..., ...)"
            )
        if self._frozen:
            raise RegistrationError(
                f"cannot add {name!r}: the registry is frozen once plugins have loaded; "
                "register measures inside an icc_bench_register_measures hook"
            )
        if not NAME_PATTERN.fullmatch(name):
            raise RegistrationError(
                f"name {name!r} is not snake_case (lowercase letters, digits and _, starting with a letter); "
                "it is the key in the CLI, the specs, the store and the leaderboard"
            )
        if name in self._items:
            first = self._items[name].plugin
            by_first = first.describe() if first else "a direct registry.add() call"
            again = f"{self._plugin.describe()} cannot register it again" if self._plugin else "it cannot be added twice"
            raise RegistrationError(
                f"{name!r} is already registered by {by_first}; {again}: rename one of them, "
                "or block a plugin with ICC_BENCH_DISABLE_PLUGINS=<plugin name>"
            )
        if self._plugin is not None:
            item = dataclasses.replace(item, plugin=self._plugin)
        self._items[name] = item
        return item

    @contextmanager
    def plugin_scope(self, plugin: PluginInfo) -> Iterator[None]:
        """Attribute every ``add`` inside the block to ``plugin``; undo them if the block raises.

        The plugin manager wraps each plugin's hook call in it, so a plugin whose hook fails
        midway leaves nothing half-registered.
        """
        if self._plugin is not None:
            raise RuntimeError(f"plugin scope of {self._plugin.name!r} is still open")
        before = set(self._items)
        self._plugin = plugin
        try:
            yield
        except BaseException:
            for name in [n for n in self._items if n not in before]:
                del self._items[name]
            raise
        finally:
            self._plugin = None

    def get(self, name: str) -> T:
        """The item registered under ``name``; an unknown name says "did you mean" and lists names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownMeasureError(self._unknown_message(f"unknown measure {name!r}", name)) from None

    def list(self, patterns: str | list[str] | None = None) -> list[T]:
        """Items whose name matches any of ``patterns`` (fnmatch, e.g. ``"c*"``), in registration order.

        ``patterns`` is a list, or one comma-separated string (``"c1,c3,sharp*"``); None selects
        everything. A pattern that matches nothing is an error naming it, never an empty selection.
        """
        if patterns is None:
            return list(self._items.values())
        if isinstance(patterns, str):
            patterns = patterns.split(",")
        patterns = [p.strip() for p in patterns if p.strip()]
        if not patterns:
            raise ValueError("no measure name or pattern given; pass e.g. 'c1,c3' or 'sharp*'")
        for pattern in patterns:
            if not any(fnmatchcase(name, pattern) for name in self._items):
                raise UnknownMeasureError(self._unknown_message(f"no measure matches {pattern!r}", pattern))
        return [item for name, item in self._items.items() if any(fnmatchcase(name, p) for p in patterns)]

    def _unknown_message(self, what: str, asked: str) -> str:
        if not self._items:
            return f"{what}: no measures are registered (see the plugin failures in `icc-bench measures`)"
        close = difflib.get_close_matches(asked, list(self._items), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        return f"{what}{hint} Registered measures: {', '.join(self._items)}."

    def names(self) -> list[str]:
        return list(self._items)

    def freeze(self) -> None:
        """Refuse every later ``add``: the set of measures is fixed once plugins have loaded."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._items)}{', frozen' if self._frozen else ''})"


class DatasetRegistry:
    """What ``icc_bench_register_datasets`` receives; forwards to ``icc_bench.data.register_dataset``."""

    def add(self, name: str, options_model: type[BaseModel], builder: Callable[..., Any], description: str) -> None:
        """Register a dataset; see ``icc_bench.data.register_dataset`` for what each argument must be."""
        from icc_bench.data import register_dataset

        register_dataset(name, options_model, builder, description)


class ArchitectureRegistry:
    """What ``icc_bench_register_architectures`` receives; forwards to ``icc_bench.models.register_architecture``."""

    def add(self, name: str, builder: Callable[..., Any]) -> None:
        """Register an architecture; ``builder`` takes what ``icc_bench.models.build_model`` passes it."""
        from icc_bench.models import register_architecture

        register_architecture(name, builder)

