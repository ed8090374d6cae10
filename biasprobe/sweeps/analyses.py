"""One analysis over many checkpoints into one store: :func:`sweep`.

Each checkpoint is one task: load it on the worker's device, run the analysis with the sweep's
options and seed, write its region of the store (see :mod:`biasprobe.sweeps.store`). Results
therefore equal those of the analysis run on each checkpoint alone, whatever the number of workers
and whatever order the tasks finish in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from biasprobe.analyses.base import registered, sweepable
from biasprobe.errors import InputError
from biasprobe.sweeps import engine
from biasprobe.sweeps import store as sweep_store
from biasprobe.sweeps.engine import SweepError


def __getattr__(name: str):
    """``SWEEPABLE``: {name: :class:`~biasprobe.analyses.base.Sweep`} of the registered analyses that sweep."""
    if name == "SWEEPABLE":
        return {key: registered(key).sweep for key in sweepable()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def checkpoint_names(checkpoints: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Name -> path: a mapping as given, or each path's file stem (folder name for a folder)."""
    if isinstance(checkpoints, Mapping):
        named = {str(name): Path(path) for name, path in checkpoints.items()}
    else:
        paths = [Path(path) for path in checkpoints]
        named = {}
        for path in paths:
            name = path.name if path.is_dir() else path.stem
            if name in named:
                raise InputError(f"two checkpoints are named {name!r} ({named[name]} and {path}); "
                                 "rename one or pass a mapping name -> path")
            named[name] = path
    if not named:
        raise InputError("no checkpoints to sweep")
    missing = [str(path) for path in named.values() if not path.exists()]
    if missing:
        raise InputError(f"no checkpoint at {missing[0]}: check the path")
    return named


def sweep(
    analysis: str,
    checkpoints: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    images: torch.Tensor | np.ndarray | None = None,
    *,
    seed: int = 0,
    device: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    per_gpu: int = 1,
    processes: bool = True,
    progress: bool = False,
    on_dashboard: Callable[[str], None] | None = None,
    **options,
) -> Path:
    """Run ``analysis`` (any registered analysis that sweeps: ``jacobian``, ``locality``, ``gap``, and those
    of plug-ins; see :class:`~biasprobe.analyses.base.Sweep`) on every checkpoint into one store at
    ``out`` with a ``checkpoint`` dimension, and return its path.

    ``images`` (B, C, H, W) in [0, 1] are the clean images of jacobian and locality (the gap takes each
    checkpoint's training images and the test split of its data set); ``options`` are the analysis's
    own keywords (``sigmas``, ``timesteps``, ``top_k``, ``layers``, ``k``, ...). Tasks run on a local
    dask cluster of ``workers`` processes (default: one per GPU, else one per core), on the scheduler
    at ``scheduler`` (address or scheduler file), or with ``workers=0`` one after another here.
    ``per_gpu`` sets the default workers per GPU; ``device="auto"`` gives each worker its GPU.

    A store at ``out`` from the same sweep (analysis, options, seed, images, checkpoints by sha256)
    is resumed: finished checkpoints are skipped. A store of anything else is never touched. If some
    checkpoints fail, the others are still written and :class:`SweepError` names the failed ones;
    running the sweep again retries only those.
    """
    if analysis not in sweepable():
        raise InputError(f"cannot sweep {analysis!r}; sweepable analyses: {', '.join(sweepable())}")
    needs_images = registered(analysis).sweep.needs_images
    if needs_images and images is None:
        raise InputError(f"the {analysis} sweep needs clean images")
    pixels = None if images is None else np.ascontiguousarray(torch.as_tensor(images, dtype=torch.float32).numpy())
    named = checkpoint_names(checkpoints)
    out = Path(out)
    hashes = {name: _sha256(path) for name, path in named.items()}
    specification = {
        "analysis": analysis, "seed": int(seed), "options": json.loads(json.dumps(options, default=_plain)),
        "checkpoints": [[name, hashes[name]] for name in named],
        "images_sha256": None if pixels is None else hashlib.sha256(pixels.tobytes()).hexdigest(),
    }
    recorded = sweep_store.specification(out)
    if recorded is None:
        facts = [_facts(name, path, hashes[name]) for name, path in named.items()]
        from biasprobe.store import provenance

        sweep_store.create(out, facts, specification, attrs={**provenance(seed=seed), "analysis": analysis})
    elif recorded != specification:
        changed = sorted(key for key in specification if specification[key] != recorded.get(key))
        raise InputError(f"{out} holds another sweep (its {', '.join(changed)} differ); "
                         "choose another {out} or delete it to start over", parameters=["out"])
    elif sweep_store.is_complete(out):
        return out
    done = sweep_store.completed(out)
    distributed = not (workers == 0 and not scheduler)
    lock_name = f"biasprobe-sweep-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]}"
    tasks = {
        name: (analysis, str(path), name, index, str(out.resolve()), options, pixels, seed, device, lock_name,
               distributed)
        for index, (name, path) in enumerate(named.items()) if not done[index]
    }
    outcome = engine.run(_analyse, tasks, workers=workers, scheduler=scheduler, per_gpu=per_gpu,
                         processes=processes, progress=progress, description=f"sweep {analysis}",
                         unit="checkpoints", on_dashboard=on_dashboard)
    if outcome.failed:
        listing = "; ".join(f"{name}: {error}" for name, error in outcome.failed.items())
        raise SweepError(f"{len(outcome.failed)} of {len(named)} checkpoints failed ({listing}); the other "
                         f"regions of {out} are written; run the sweep again to retry the failed ones",
                         outcome.failed, outcome.tracebacks)
    sweep_store.finish(out)
    return out


def _analyse(analysis: str, path: str, name: str, index: int, out: str, options: dict, pixels, seed: int,
             device: str, lock_name: str, distributed: bool) -> str:
    """One task: analyse checkpoint ``path`` and write region ``index`` of the sweep store ``out``."""
    from biasprobe.formats import load

    denoiser = load(path, device=engine.worker_device(device))
    images = None if pixels is None else torch.from_numpy(pixels)
    result = registered(analysis).run_in_sweep(denoiser, images, seed=seed, **options)
    sweep_store.write_region(out, index, result, name, lock=engine.task_lock(lock_name, distributed))
    return name


def _facts(name: str, path: Path, sha256: str) -> dict:
    from biasprobe.formats import load

    return sweep_store.checkpoint_facts(name, path, load(path, device="cpu").describe(), sha256)


def _sha256(path: Path) -> str:
    from biasprobe.denoiser import file_sha256

    return file_sha256(path)


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray | np.generic | torch.Tensor) else str(value)
