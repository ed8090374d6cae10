"""What the benchmark scripts share: importing biasprobe where only torch is installed."""

from __future__ import annotations

import sys
import types
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def import_biasprobe() -> None:
    """Import biasprobe; where xarray/zarr are missing, expose its torch-only modules without its __init__."""
    sys.path.insert(0, str(REPOSITORY))
    try:
        import biasprobe  # noqa: F401
    except ModuleNotFoundError:
        package = types.ModuleType("biasprobe")
        package.__path__ = [str(REPOSITORY / "biasprobe")]
        sys.modules["biasprobe"] = package
