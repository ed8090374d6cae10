"""Option parsing shared by the commands: devices, number lists, windows."""

from __future__ import annotations

import torch

from biasprobe.errors import InputError


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(device)


def parse_numbers(text: str | None, name: str, kind=float) -> list | None:
    """'0.05,0.2' -> [0.05, 0.2]; None stays None."""
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"--{name} is empty")
    return values


def parse_windows(text: str | None) -> list[int]:
    """'3,5,7' -> [3, 5, 7]; each must be a positive odd integer."""
    windows = parse_numbers(text, "windows", int) or []
    bad = [w for w in windows if w < 1 or w % 2 == 0]
    if bad:
        raise InputError(f"attention windows must be positive odd integers, got {bad}")
    return windows
