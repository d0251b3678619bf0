"""Checkpoints of an import: read without running code, and checked against their architecture."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.models.factory import FACTORY_PREFIX, build_factory_model

# torch is imported in the functions that use it, as everywhere in the importer.
if TYPE_CHECKING:
    import torch
    from torch import nn

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as a state_dict; the message says why and what to do."""


def load_checkpoint(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``: safetensors, or a ``.pt``/``.pth`` read with ``weights_only=True``.

    ``weights_only`` restricts unpickling to tensors and plain containers, so a file that would
    call a function (``os.system``, a class constructor) is refused before anything runs.
    """
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{path.name}: unsupported file type '{suffix}'; save the state_dict as .safetensors or .pt")
    if suffix == ".safetensors":
        if key is not None:
            raise CheckpointError(f"{path.name}: a safetensors file is a flat state_dict; leave checkpoint_key empty")
        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({e})") from None
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (a legacy file is a pickle, which opens with PROTO, 0x80):
    # anything else is not a checkpoint, whatever the unpickler would make of its bytes.
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path.name}: not a checkpoint torch.load can read (neither the zip archive torch.save writes nor a "
            f"pickle; it starts with {head!r}); save the weights with torch.save(model.state_dict(), path)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused is None:  # a damaged file, not a refused object
            raise CheckpointError(
                f"{path.name}: not a checkpoint torch.load can read (its pickle is damaged or not torch's); "
                "save the weights with torch.save(model.state_dict(), path)"
            ) from None
        what = f"it refers to {refused.group(1)}"
        raise CheckpointError(
            f"{path.name}: holds Python objects that torch.load(weights_only=True) refuses to unpickle ({what}); "
            "icc-bench never runs code from a checkpoint: save the weights alone, torch.save(model.state_dict(), path)"
        ) from None
    except Exception as e:  # torch.load raises many types on a file that is not a checkpoint
        raise CheckpointError(f"{path.name}: torch.load cannot read it ({type(e).__name__}: {e})") from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = ", ".join(f"'{k}'" for k in obj) if isinstance(obj, dict) else f"a {type(obj).__name__}"
            raise CheckpointError(f"{path.name}: no entry '{key}' (checkpoint_key); it holds {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name}: holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        entries = ", ".join(f"'{k}'" for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "")
        nested = [k for k, v in obj.items() if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())]
        raise CheckpointError(
            f"{path.name}: not a state_dict: entry '{others[0]}' is a {type(obj[others[0]]).__name__}, not a tensor "
            f"(entries: {entries}); name the entry that holds the state_dict in column checkpoint_key"
            + (f": '{nested[0]}'?" if nested else "")
        )
    return obj


def build_imported_model(
    arch: ArchitectureSpec, options: dict[str, Any], hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """The untrained network of one imported model: a factory's, or one of ``build_model``'s."""
    from icc_bench.models import build_model

    if arch.name.startswith(FACTORY_PREFIX):
        return build_factory_model(arch.name, options, num_classes)
    if options:
        raise ValueError(f"architecture '{arch.name}': architecture_options are for factory architectures only")
    try:
        return build_model(arch, hp, num_classes, input_shape)
    except ValueError as e:
        if str(e).startswith("unknown architecture"):
            raise ValueError(f"{e}, or factory:<module>:<function> for a network of your own") from None
        raise


def state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """How a checkpoint's state_dict fails an architecture's, in one sentence; None when it fits.

    Names the first key, in the architecture's order, that the checkpoint lacks or holds in
    another shape, or else the first key of the checkpoint the architecture does not have.
    """
    bad = [k for k, v in expected.items() if k not in found or tuple(found[k].shape) != tuple(v.shape)]
    extra = [k for k in found if k not in expected]
    if not bad and not extra:
        return None
    if bad and bad[0] in found:
        k = bad[0]
        message = (f"key '{k}' has shape {tuple(found[k].shape)} in the checkpoint "
                   f"but {tuple(expected[k].shape)} in the architecture")
    elif bad:
        message = f"key '{bad[0]}' of the architecture is missing from the checkpoint"
    else:
        message = f"key '{extra[0]}' of the checkpoint is not in the architecture"
    more = len(bad) + len(extra) - 1
    if more:
        message += f" (and {more} more mismatching key{'s' if more > 1 else ''})"
    if all(k.startswith("module.") for k in found):
        message += "; its keys start with 'module.' (saved from DataParallel): save model.module.state_dict()"
    return f"the state_dict does not fit the architecture: {message}"


def runs_on(model: nn.Module, state_dict: dict[str, torch.Tensor], dataset) -> str | None:
    """Load the weights and score two training images; None when the output is one score per class
    for each image, else what went wrong."""
    import torch

    try:
        model.load_state_dict(state_dict)
        with torch.no_grad():
            out = model.eval()(dataset.x_train[:2])
    except Exception as e:  # whatever fails here, the model does not run on this dataset
        return (f"the model does not run on the dataset's images {tuple(dataset.input_shape)} "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})")
    expected = (min(2, len(dataset.x_train)), dataset.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        return f"the model outputs {shape} for {expected[0]} images, not one score per class {expected}"
    return None
