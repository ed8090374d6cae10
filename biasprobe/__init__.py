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

from biasprobe.version import __version__

# The public names load on first use (PEP 562), so that ``import biasprobe.errors`` or the
# command line's ``--help`` does not pay for torch, scipy and xarray. The analyses are those of the
# registry (biasprobe.analyses.base.registry: each names its public name where it is defined, plug-ins too).
_PUBLIC = {
    "gahb_summary": "biasprobe.analyses.harmonic",
    "Denoiser": "biasprobe.denoiser",
    "BiasprobeError": "biasprobe.errors",
    "CheckpointError": "biasprobe.errors",
    "InputError": "biasprobe.errors",
    "TrainingDiverged": "biasprobe.errors",
    "load": "biasprobe.formats",
    "report": "biasprobe.reports",
    "Schedule": "biasprobe.schedules",
    "open": "biasprobe.store",
    "save": "biasprobe.store",
    "sweep": "biasprobe.sweeps",
}


def _analyses() -> dict:
    from biasprobe.analyses.base import public

    return public()


def __getattr__(name: str):
    if name == "__all__":
        return sorted({"__version__", *_PUBLIC, *_analyses()})
    import importlib
    import importlib.util

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module 'biasprobe' has no attribute {name!r}")  # a submodule: imported, not looked up
    elif name in (analyses := _analyses()):
        value = analyses[name]
    else:
        raise AttributeError(f"module 'biasprobe' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __getattr__("__all__")
