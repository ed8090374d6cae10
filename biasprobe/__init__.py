"""biasprobe: measure the inductive biases that let diffusion denoisers generalize.

>>> import biasprobe as bp
>>> d = bp.load("ckpt.pt")                      # any supported checkpoint -> Denoiser
>>> bp.save(dataset, "result.zarr"); bp.open("result.zarr")
"""

__version__ = "0.1.0"

from biasprobe.denoiser import Denoiser  # noqa: E402
from biasprobe.errors import BiasprobeError, CheckpointError, InputError  # noqa: E402
from biasprobe.formats import load  # noqa: E402
from biasprobe.schedules import Schedule  # noqa: E402
from biasprobe.store import open, save  # noqa: E402, A004

__all__ = [
    "BiasprobeError",
    "CheckpointError",
    "Denoiser",
    "InputError",
    "Schedule",
    "__version__",
    "load",
    "open",
    "save",
]
