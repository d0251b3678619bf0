"""The device a command runs on: ``--device`` checked and resolved, and what training does per device.

``check_device`` refuses, before a command writes anything, a ``--device`` this machine cannot use;
``resolve_device`` turns ``auto`` into CUDA when present, else the CPU. Both raise
:class:`~icc_bench.errors.UserError`, the command line's one-sentence error (exit status 2).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from icc_bench.errors import UserError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else the CPU; otherwise the device named, if this
    machine has it (a :class:`UserError` if not)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device}: not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


def check_device(device: str | None, *, on_ray: bool = False) -> None:
    """Refuse a ``--device`` this machine cannot use, before any command writes anything.

    On Ray the device is the workers' (a head node without a GPU may drive GPU workers), so only
    its spelling is checked here; the executor checks the rest against the cluster.
    """
    if device is None or device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device}: not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device}: icc-bench runs on cpu, cuda or mps; use one of those, or auto")
    if on_ray:
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"--device {device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine; use --device cpu (or auto)")


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (float32, bit-for-bit reproducible)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state_dict on the CPU, each tensor contiguous (as checkpoints store it)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
