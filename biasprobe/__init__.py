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

# The public names load on first use (PEP 562), so that ``import biasprobe.errors`` or the
# command line's ``--help`` does not pay for torch, scipy and xarray.
_PUBLIC = {
    "compare": "biasprobe.analyses.comparison",
    "gap": "biasprobe.analyses.generalization",
    "gahb_summary": "biasprobe.analyses.harmonic",
    "jacobian": "biasprobe.analyses.jacobian",
    "locality": "biasprobe.analyses.locality",
    "memorization": "biasprobe.analyses.memorization",
    "Denoiser": "biasprobe.denoiser",
    "BiasprobeError": "biasprobe.errors",
    "CheckpointError": "biasprobe.errors",
    "InputError": "biasprobe.errors",
    "load": "biasprobe.formats",
    "report": "biasprobe.reports",
    "Schedule": "biasprobe.schedules",
    "open": "biasprobe.store",
    "save": "biasprobe.store",
    "sweep": "biasprobe.sweeps",
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'biasprobe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
