"""The dataset object, the dataset registry and ``load_dataset``.

Every dataset is registered under a snake_case name (the name a population spec's
``[dataset] name`` uses) with three things: a frozen pydantic model of its options, a builder that
returns the raw images, and a one-line description. ``load_dataset`` then does what every dataset
shares, so no builder re-implements it:

1. validate ``spec.options`` with the dataset's own options model (unknown options are errors);
2. call the builder, and check what it returned (shapes, dtypes, label ranges, hierarchy);
3. subsample the training and test sets (``train_per_class`` / ``test_per_class``, seeded,
   stratified; balanced over subclasses when the dataset has a hierarchy);
4. normalize every channel with the mean and standard deviation of the (subsampled) training set.

A new dataset (for instance from a plugin) is one ``register_dataset`` call; its options model must
subclass :class:`DatasetOptions` so that the common options above exist for it too.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from icc_bench.config import DatasetSpec


class DataError(ValueError):
    """A dataset that cannot be loaded; the message names the dataset, option or file and the fix."""


@dataclass
class ImageDataset:
    """Training and test images with their labels, already normalized, on one device.

    ``y_train`` / ``y_test`` hold the labels the network is trained on. When the dataset has a
    two-level hierarchy these are the superclasses, ``fine_train`` / ``fine_test`` hold the
    subclasses and ``fine_to_coarse[f]`` is the superclass of subclass ``f``; otherwise the three
    fine fields are None.
    """

    name: str
    x_train: Tensor  # (N, C, H, W) float32, normalized per channel
    y_train: Tensor  # (N,) int64 in [0, num_classes)
    x_test: Tensor  # (M, C, H, W) float32, normalized with the training set's statistics
    y_test: Tensor  # (M,) int64
    num_classes: int
    fine_train: Tensor | None = None  # (N,) int64 subclass of each training image
    fine_test: Tensor | None = None  # (M,) int64
    fine_to_coarse: Tensor | None = None  # (num_fine,) int64 superclass of each subclass
    class_names: list[str] | None = None  # one name per trained class (superclasses when hierarchical)
    # An independent held-out split drawn like the test set (only datasets that can draw one; CIFAR
    # has no third split): the `oracle_heldout` reference row scores each model's accuracy on it.
    x_heldout: Tensor | None = None  # (K, C, H, W) float32, normalized with the training set's statistics
    y_heldout: Tensor | None = None  # (K,) int64

    @property
    def hierarchical(self) -> bool:
        return self.fine_to_coarse is not None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.x_train.shape[1:]
        return (int(channels), int(height), int(width))

    @property
    def num_fine_classes(self) -> int | None:
        return None if self.fine_to_coarse is None else int(self.fine_to_coarse.numel())

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy with every tensor on ``device`` (tensors already there are shared, not copied)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
            fine_train=move(self.fine_train),
            fine_test=move(self.fine_test),
            fine_to_coarse=move(self.fine_to_coarse),
            x_heldout=move(self.x_heldout),
            y_heldout=move(self.y_heldout),
        )


class DatasetOptions(BaseModel):
    """Options every dataset takes; a dataset's own options model subclasses this one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_per_class: int | None = Field(
        None, ge=1, description="keep this many training images per trained class (seeded, stratified); None = all"
    )
    test_per_class: int | None = Field(
        None, ge=1, description="keep this many test images per class (seeded, stratified); None = all"
    )
    subsample_seed: int = Field(0, ge=0, description="seed of the train_per_class / test_per_class draws")


#: A builder turns validated options and the data folder (None when not given) into an
#: ImageDataset of *unnormalized* float32 images; ``load_dataset`` subsamples and normalizes it.
DatasetBuilder = Callable[[DatasetOptions, Path | None], ImageDataset]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset."""

    name: str
    options_model: type[DatasetOptions]
    builder: DatasetBuilder
    description: str


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str, options_model: type[DatasetOptions], builder: DatasetBuilder, description: str
) -> DatasetEntry:
    """Add a dataset to the registry under ``name``; refuses duplicates and malformed entries."""
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"dataset name {name!r} must be a snake_case identifier (it is used in specs and the CLI)")
    if name in _REGISTRY:
        raise ValueError(f"a dataset named {name!r} is already registered; choose another name")
    if not (isinstance(options_model, type) and issubclass(options_model, DatasetOptions)):
        raise ValueError(
            f"dataset {name!r}: options_model must subclass icc_bench.data.DatasetOptions, got {options_model!r}"
        )
    if not options_model.model_config.get("frozen") or options_model.model_config.get("extra") != "forbid":
        raise ValueError(f"dataset {name!r}: options_model must stay frozen with extra='forbid'")
    if not callable(builder):
        raise ValueError(f"dataset {name!r}: builder must be callable, got {builder!r}")
    if not description.strip() or "\n" in description.strip():
        raise ValueError(f"dataset {name!r}: description must be one non-empty line")
    entry = DatasetEntry(name, options_model, builder, description.strip())
    _REGISTRY[name] = entry
    return entry


def list_datasets() -> list[DatasetEntry]:
    """Every registered dataset, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; an unknown name is a DataError that lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(_REGISTRY)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"Unknown dataset {name!r}; known datasets: {', '.join(known)}.{hint}") from None


def load_dataset(spec: DatasetSpec, data_dir: Path | None = None) -> ImageDataset:
    """Build, check, subsample and normalize the dataset that ``spec`` names.

    Parameters
    ----------
    spec : DatasetSpec
        ``spec.name`` is a registered dataset, ``spec.options`` its options.
    data_dir : Path or None
        Folder that holds downloaded datasets (only CIFAR needs one; it then falls back to the
        ``ICC_BENCH_DATA`` environment variable). Nothing is ever downloaded.

    Returns
    -------
    ImageDataset
        On the CPU, float32 images normalized per channel: ``(x - mean_c) / std_c`` with the mean
        and (population) standard deviation of channel ``c`` over the training images kept.
    """
    entry = get_dataset_entry(spec.name)
    options = validate_options(entry, spec.options)
    raw = entry.builder(options, None if data_dir is None else Path(data_dir))
    _check_built(entry.name, raw)
    raw = dataclasses.replace(raw, name=entry.name)
    subsampled = _subsample(raw, options)
    return _normalize(subsampled)


def validate_options(entry: DatasetEntry, options: dict) -> DatasetOptions:
    """``options`` validated by the dataset's own model; the first problem becomes a DataError."""
    try:
        return entry.options_model.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        option = ".".join(str(p) for p in first["loc"]) or "(options)"
        if first["type"] == "extra_forbidden":
            known = list(entry.options_model.model_fields)
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"Dataset {entry.name!r} has no option {option!r}; its options are: {', '.join(known)}.{hint}"
            ) from None
        reason = first["msg"][:1].lower() + first["msg"][1:]
        raise DataError(f"Dataset {entry.name!r}: option {option!r} is invalid: {reason} (got {first['input']!r}).") from None


def _check_built(name: str, ds: ImageDataset) -> None:
    """Refuse a builder result that would break later stages, naming what is wrong."""

    def fail(problem: str) -> None:
        raise DataError(f"Dataset {name!r}: its builder returned {problem}; fix the builder.")

    if (ds.x_heldout is None) != (ds.y_heldout is None):
        fail("only one of x_heldout, y_heldout (give both or neither)")
    splits = [("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)]
    if ds.x_heldout is not None:
        splits.append(("heldout", ds.x_heldout, ds.y_heldout))
    for split, x, y in splits:
        if x.dtype != torch.float32 or x.ndim != 4:
            fail(f"x_{split} of dtype {x.dtype} and shape {tuple(x.shape)}, not float32 (N, C, H, W)")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            fail(f"y_{split} of dtype {y.dtype} and shape {tuple(y.shape)}, not int64 ({x.shape[0]},)")
        if x.shape[0] == 0:
            fail(f"an empty {split} set")
        if int(y.min()) < 0 or int(y.max()) >= ds.num_classes:
            fail(f"y_{split} labels outside [0, {ds.num_classes})")
    for split, x, _ in splits[1:]:
        if x.shape[1:] != ds.x_train.shape[1:]:
            fail(f"train images of shape {tuple(ds.x_train.shape[1:])} but {split} images of {tuple(x.shape[1:])}")
    fine_fields = (ds.fine_train, ds.fine_test, ds.fine_to_coarse)
    if any(t is None for t in fine_fields) and not all(t is None for t in fine_fields):
        fail("only some of fine_train, fine_test, fine_to_coarse (give all three or none)")
    if ds.fine_to_coarse is not None:
        for split, fine, coarse in (("train", ds.fine_train, ds.y_train), ("test", ds.fine_test, ds.y_test)):
            if fine.dtype != torch.int64 or fine.shape != coarse.shape:
                fail(f"fine_{split} of dtype {fine.dtype} and shape {tuple(fine.shape)}, not like y_{split}")
            if int(fine.min()) < 0 or int(fine.max()) >= ds.fine_to_coarse.numel():
                fail(f"fine_{split} labels outside [0, {ds.fine_to_coarse.numel()})")
            if not torch.equal(ds.fine_to_coarse[fine], coarse):
                fail(f"fine_{split} labels whose superclass (fine_to_coarse) differs from y_{split}")
    if ds.class_names is not None and len(ds.class_names) != ds.num_classes:
        fail(f"{len(ds.class_names)} class names for {ds.num_classes} classes")


def _stratified_indices(
    labels: Tensor, fine: Tensor | None, per_class: int, generator: torch.Generator, what: str
) -> Tensor:
    """Sorted indices of ``per_class`` samples of every label, drawn without replacement.

    With subclasses (``fine`` not None) the ``per_class`` samples of a class are split as evenly as
    possible over its subclasses (``per_class // k`` each, one more for a seeded choice of
    ``per_class % k`` of them), so a subsample never drops or starves a subclass by chance.
    """
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        groups = [members] if fine is None else [members[fine[members] == f] for f in torch.unique(fine[members])]
        counts = torch.full((len(groups),), per_class // len(groups), dtype=torch.int64)
        counts[torch.randperm(len(groups), generator=generator)[: per_class % len(groups)]] += 1
        for group, count in zip(groups, counts.tolist()):
            if count > group.numel():
                unit = "class" if fine is None else "subclass"
                raise DataError(
                    f"{what}={per_class} needs {count} images of {unit} "
                    f"{int(cls) if fine is None else int(fine[group[0]])}, which has only {group.numel()}; "
                    f"lower {what}."
                )
            chosen.append(group[torch.randperm(group.numel(), generator=generator)[:count]])
    return torch.sort(torch.cat(chosen)).values


def _subsample(ds: ImageDataset, options: DatasetOptions) -> ImageDataset:
    if options.train_per_class is None and options.test_per_class is None:
        return ds
    # One generator, train drawn first: the training subsample does not depend on test_per_class.
    generator = torch.Generator().manual_seed(options.subsample_seed)
    out = ds
    for split, per_class in (("train", options.train_per_class), ("test", options.test_per_class)):
        if per_class is None:
            continue
        y, fine = getattr(ds, f"y_{split}"), getattr(ds, f"fine_{split}")
        try:
            keep = _stratified_indices(y, fine, per_class, generator, f"{split}_per_class")
        except DataError as e:
            raise DataError(f"Dataset {ds.name!r}: option {e}") from None
        changes = {f"x_{split}": getattr(ds, f"x_{split}")[keep], f"y_{split}": y[keep]}
        if fine is not None:
            changes[f"fine_{split}"] = fine[keep]
        out = dataclasses.replace(out, **changes)
    return out


def channel_statistics(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population standard deviation of ``x`` (N, C, H, W), as float32 (C,).

    Accumulated in float64 over chunks of ``chunk`` images, so a 50,000-image CIFAR training set
    needs no float64 copy of itself.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].double()  # (chunk, C, H, W)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)  # clamp: rounding can give -1e-17
    return mean.float(), var.sqrt().float()


def _normalize(ds: ImageDataset) -> ImageDataset:
    mean, std = channel_statistics(ds.x_train)
    # A constant channel has std 0: centre it and leave its scale alone rather than divide by 0.
    std = torch.where(std > 0, std, torch.ones_like(std))
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    heldout = None if ds.x_heldout is None else (ds.x_heldout - mean) / std
    return dataclasses.replace(ds, x_train=(ds.x_train - mean) / std, x_test=(ds.x_test - mean) / std, x_heldout=heldout)
