"""biasprobe: measure the inductive biases that let diffusion denoisers generalize.

>>> import biasprobe as bp
>>> d = bp.load("ckpt.pt")                              # any supported checkpoint -> Denoiser
>>> j = bp.jacobian(d, image, sigmas=[0.05, 0.2])      # xarray.Dataset
>>> a = bp.locality(d, images, sigmas=[0.05, 0.2])     # xarray.Dataset
>>> g = bp.gap(d, train_images, test_images)           # xarray.Dataset
>>> bp.save(j, "x.zarr"); j = bp.open("x.zarr")
>>> bp.sweep("gap", ["a.pt", "b.pt"], "gap.zarr")        # many checkpoints, one store
>>> bp.report(["x.zarr"], "report")                   # figures + index.md / index.html
"""

__version__ = "0.1.0"

from biasprobe.analyses.comparison import compare
from biasprobe.analyses.generalization import gap
from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.locality import locality
from biasprobe.analyses.memorization import memorization
from biasprobe.denoiser import Denoiser
from biasprobe.errors import BiasprobeError, CheckpointError, InputError
from biasprobe.formats import load
from biasprobe.reports import report
from biasprobe.schedules import Schedule
from biasprobe.store import open, save
from biasprobe.sweeps import sweep

__all__ = [
    "BiasprobeError",
    "CheckpointError",
    "Denoiser",
    "InputError",
    "Schedule",
    "__version__",
    "compare",
    "gahb_summary",
    "gap",
    "jacobian",
    "load",
    "locality",
    "memorization",
    "open",
    "report",
    "save",
    "sweep",
]
