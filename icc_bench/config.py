"""Population specs: the pydantic models behind ``model_zoo/*.toml``.

A spec names a dataset, an architecture, a training schedule and a hyperparameter grid. The grid
uses the paper's tied pairs (SPEC §4): ``lr_wd``, ``dropout_aug`` and ``width_depth`` vary two
hyperparameters together, so the expanded set of configurations is the paper's 192 (or 144), not a
full Cartesian product of the eight axes.

Every model is frozen and forbids unknown fields, so a typo in a spec is an error that names the
field, never a silently ignored setting.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: The eight hyperparameter axes, in the column order of the paper's tables.
AXES: tuple[str, ...] = (
    "learning_rate",
    "batch_size",
    "weight_decay",
    "optimizer",
    "dropout",
    "augmentation",
    "width",
    "depth",
)

#: The five composite axes over which the paper's grid is Cartesian (used by CMI).
COMPOSITE_AXES: tuple[tuple[str, ...], ...] = (
    ("learning_rate", "weight_decay"),
    ("batch_size",),
    ("optimizer",),
    ("dropout", "augmentation"),
    ("width", "depth"),
)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, lt=1)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HyperParams(_Frozen):
    """One configuration: the eight axes of SPEC §4."""

    learning_rate: float = Field(gt=0, description="SGD learning rate; Adam uses it / 100")
    batch_size: int = Field(gt=0)
    weight_decay: float = Field(ge=0)
    optimizer: Literal["sgd", "adam"]
    dropout: float = Field(ge=0, lt=1)
    augmentation: bool
    width: float = Field(gt=0, description="width factor: x1 -> base_width channels in stage 1")
    depth: float = Field(gt=0, description="depth factor: x1 -> the base number of layers")

    def axis_values(self) -> dict[str, Any]:
        return {axis: getattr(self, axis) for axis in AXES}

    def slug(self) -> str:
        """A readable, filesystem-safe id of the configuration (without the seed)."""
        return (
            f"lr{self.learning_rate:g}_wd{self.weight_decay:g}_bs{self.batch_size}_{self.optimizer}"
            f"_do{self.dropout:g}_aug{int(self.augmentation)}_w{self.width:g}_d{self.depth:g}"
        )


class DatasetSpec(_Frozen):
    """Which dataset, and the options its builder takes (validated by the dataset itself)."""

    name: str = Field(description="a registered dataset: cifar10, cifar100, cifar100_coarse, digits, synthetic_hierarchy")
    options: dict[str, Any] = Field(default_factory=dict)


class ArchitectureSpec(_Frozen):
    """The network. ``vgg`` and ``wrn`` are the paper's; ``timm:<name>`` is any timm model."""

    name: str = Field(description="vgg, wrn, or timm:<model name>")
    base_width: int = Field(32, gt=0, description="channels in stage 1 at width factor 1 (paper: 32)")
    base_depth: int | None = Field(
        None, description="layers at depth factor 1 (paper: 9 for VGG, 18 for WRN); None = the paper's"
    )


class Schedule(_Frozen):
    """Training length and learning-rate schedule (paper: 250 epochs, x0.2 at 150, 230, 240)."""

    epochs: int = Field(250, gt=0)
    milestones: tuple[int, ...] = (150, 230, 240)
    gamma: float = Field(0.2, gt=0)
    stop_train_loss: float = Field(1e-4, ge=0, description="stop once the epoch's training loss is below this")
    save_epochs: tuple[int, ...] = Field((), description="also keep checkpoints after these epochs (dynamics analysis)")
    test_every: int = Field(
        1, ge=0,
        description="the curve's test accuracy every N epochs and at save_epochs (0: save_epochs only); "
        "the record's final accuracies are always measured",
    )

    @field_validator("milestones", "save_epochs")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if list(v) != sorted(set(v)) or any(e <= 0 for e in v):
            raise ValueError("must be strictly increasing positive epoch numbers")
        return v


class Grid(_Frozen):
    """The hyperparameter grid, in the paper's tied pairs.

    ``design = "cartesian"`` (the paper's) expands to every combination of the five lists.
    ``design = "one_at_a_time"`` takes the first value of every list as the base configuration and
    varies one list at a time through its other values: 1 + sum(len - 1) configurations, each axis
    varied at least once, and every axis still has a group for granulated Kendall (the base and its
    variants along that axis agree on every other axis).
    """

    design: Literal["cartesian", "one_at_a_time"] = "cartesian"
    lr_wd: list[tuple[PositiveFloat, NonNegativeFloat]] = Field(min_length=1, description="(learning rate, weight decay) pairs")
    batch_size: list[PositiveInt] = Field(min_length=1)
    optimizer: list[Literal["sgd", "adam"]] = Field(min_length=1)
    dropout_aug: list[tuple[Rate, bool]] = Field(min_length=1, description="(dropout rate, augmentation) pairs")
    width_depth: list[tuple[PositiveFloat, PositiveFloat]] = Field(min_length=1, description="(width, depth) factor pairs")

    def expand(self) -> list[HyperParams]:
        lists = [self.lr_wd, self.batch_size, self.optimizer, self.dropout_aug, self.width_depth]
        if self.design == "cartesian":
            combos = list(itertools.product(*lists))
        else:
            base = tuple(values[0] for values in lists)
            combos = [base] + [
                base[:i] + (value,) + base[i + 1 :] for i, values in enumerate(lists) for value in values[1:]
            ]
        return list(dict.fromkeys(_hyperparams(*combo) for combo in combos))


def _hyperparams(lr_wd, batch_size, optimizer, dropout_aug, width_depth) -> HyperParams:
    (lr, wd), (do, aug), (w, d) = lr_wd, dropout_aug, width_depth
    return HyperParams(
        learning_rate=lr, weight_decay=wd, batch_size=batch_size, optimizer=optimizer,
        dropout=do, augmentation=aug, width=w, depth=d,
    )


class PopulationSpec(_Frozen):
    """A population: what ``icc-bench train NAME`` trains into ``<runs>/NAME/``.

    Configurations come from ``grid`` (the paper's tied Cartesian grid), from an explicit list
    ``configs``, or both (the union, in that order, duplicates removed). ``seeds`` repeats every
    configuration once per seed.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: DatasetSpec
    architecture: ArchitectureSpec
    schedule: Schedule = Schedule()
    grid: Grid | None = None
    configs: list[HyperParams] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    measure_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-measure settings overrides for this population, e.g. [measure_settings.c2] k = 1 (VGG)",
    )

    @model_validator(mode="after")
    def _has_configs(self) -> "PopulationSpec":
        if self.grid is None and not self.configs:
            raise ValueError("a population needs a [grid] or at least one [[configs]] entry")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self

    def configurations(self) -> list[HyperParams]:
        expanded = (self.grid.expand() if self.grid else []) + list(self.configs)
        return list(dict.fromkeys(expanded))  # HyperParams is frozen, hence hashable


class SpecError(ValueError):
    """A population spec that cannot be used; the message names the file, the field and the reason."""


def load_spec(path: str | Path) -> PopulationSpec:
    """Read and validate one ``model_zoo/*.toml`` file.

    A spec may start from another: ``extends = "quick.toml"`` (a path relative to the file) takes
    that spec and lays this file over it, table by table and key by key (``[grid]``,
    ``[measure_settings.c2]``, ...); a value that is not a table, lists included, replaces the
    base's. The name is always this file's own (its stem unless it sets ``name``). Used for a
    population on another training seed: ``extends = "mini.toml"`` and ``seeds = [1]``.
    """
    path = Path(path)
    raw = _read_layers(path, ())
    raw.setdefault("name", path.stem)
    try:
        return PopulationSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise SpecError(f"{path}: field '{field}': {first['msg']}{more}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such population spec file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e}); fix the syntax at that position") from None


def _read_layers(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The raw table of ``path`` with the spec it ``extends`` (if any) underneath it."""
    raw = _read_toml(path)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise SpecError(f"{path}: field 'extends': expected the path of another spec as a string, "
                        f"e.g. extends = \"quick.toml\" (relative to this file), got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise SpecError(f"{path}: field 'extends': no spec file {base_path} "
                        "(the path is relative to the extending file); fix the path")
    chain = (*seen, path.resolve())
    if base_path.resolve() in chain:
        raise SpecError(f"{path}: field 'extends': a loop ({' -> '.join(p.name for p in (*chain, base_path))}); "
                        "a spec cannot extend itself, directly or through another; remove one 'extends'")
    underneath = _read_layers(base_path, chain)
    underneath.pop("name", None)  # the extending file names its own population
    return _overlay(underneath, raw)


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = value
    return merged
