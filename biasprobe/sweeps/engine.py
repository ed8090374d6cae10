"""Running a sweep's tasks: in this process, on a local dask cluster, or on any dask scheduler.

biasprobe has no job system of its own: tasks are plain functions handed to dask.distributed,
which brings the local cluster, remote schedulers (``tcp://host:8786``), dask-jobqueue clusters
(SLURM, PBS) and the dashboard. A task that raises is reported under its name; the others run on.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from biasprobe.errors import BiasprobeError, InputError


class SweepError(BiasprobeError):
    """Some tasks of a sweep failed; ``failed`` maps each one's name to its error. The others finished."""

    def __init__(self, message: str, failed: Mapping[str, str], tracebacks: Mapping[str, str] | None = None):
        super().__init__(message)
        self.failed = dict(failed)
        self.tracebacks = dict(tracebacks or {})


@dataclass
class Outcome:
    """What became of a sweep's tasks: the names done, and each failed name's error (one line) and traceback."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None


def default_workers(per_gpu: int = 1) -> int:
    """``per_gpu`` worker processes per GPU on a GPU machine (several small models share a GPU),
    else one per CPU core."""
    import torch

    if per_gpu < 1:
        raise InputError(f"workers per GPU must be at least 1, got {per_gpu}")
    return per_gpu * torch.cuda.device_count() or os.cpu_count() or 1


def worker_device(device: str = "auto") -> str:
    """The device of a task: ``auto`` is the GPU of this dask worker (worker i of a local cluster takes
    GPU i mod the GPU count; a cluster worker that sees one GPU takes it), else the CPU."""
    import torch

    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(name) if str(name).isdigit() else 0
    except (ImportError, ValueError):
        index = 0
    return f"cuda:{index % torch.cuda.device_count()}"


def task_lock(name: str, distributed: bool):
    """A lock every task of one sweep shares: a dask ``Lock`` on a cluster, a thread lock in-process."""
    if not distributed:
        return _LOCAL_LOCKS.setdefault(name, threading.Lock())
    from distributed import Lock

    return Lock(name)


_LOCAL_LOCKS: dict[str, threading.Lock] = {}


@contextmanager
def client_for(workers: int | None, scheduler: str | None, per_gpu: int = 1,
               processes: bool = True) -> Iterator[object]:
    """A dask Client: connected to ``scheduler`` (an address such as ``tcp://host:8786`` or a
    scheduler file path) or to a new local cluster of ``workers`` single-threaded processes (default
    :func:`default_workers`); the local cluster is closed on exit. One task per process keeps each
    task's global torch state (seeds, threads) its own."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler_file=scheduler, timeout="30s") if os.path.isfile(scheduler) \
                else Client(scheduler, timeout="30s")
        except OSError as err:
            raise InputError(f"cannot reach the dask scheduler at {scheduler} ({err}); check {{scheduler}}",
                             parameters=["scheduler"]) from None
        with client:
            yield client
        return
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    workers = workers or default_workers(per_gpu)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=":0", silence_logs=logging.CRITICAL)
    with cluster, Client(cluster) as client:
        yield client


def dashboard_address(client, local: bool) -> str | None:
    """The dashboard's address, when the scheduler serves one (its pages need bokeh: for a ``local``
    cluster, installed here)."""
    import importlib.util

    if local and importlib.util.find_spec("bokeh") is None:
        return None
    try:
        served = "dashboard" in client.scheduler_info().get("services", {})
        return client.dashboard_link if served else None
    except Exception:  # noqa: BLE001 - no dashboard is not an error
        return None


def run(function: Callable, tasks: Mapping[str, tuple], *, workers: int | None = None, scheduler: str | None = None,
        per_gpu: int = 1, processes: bool = True, progress: bool = True,
        description: str = "tasks", unit: str = "tasks", on_dashboard: Callable[[str], None] | None = None) -> Outcome:
    """Call ``function(*arguments)`` for every ``name: arguments`` of ``tasks`` and report each outcome.

    ``workers=0`` runs them one after another in this process (no dask); otherwise on ``scheduler`` or
    a local cluster (see :func:`client_for`; ``per_gpu`` workers per GPU by default). ``on_dashboard`` receives the dashboard address when
    there is one. A progress bar (plain timestamped lines off a terminal, :mod:`biasprobe.progress`)
    counts finished tasks in ``unit``.
    """
    from biasprobe.progress import note, track

    outcome = Outcome()

    def failed(name: str, error: BaseException, trace: str) -> None:
        outcome.failed[name] = _one_line(error)
        outcome.tracebacks[name] = trace
        if progress:  # at once, not only in the closing error: a lost run keeps its cause
            note(f"{name} failed: {outcome.failed[name]}")

    if workers == 0 and not scheduler:
        for name in track(list(tasks), description, total=len(tasks), enabled=progress, unit=unit):
            try:
                function(*tasks[name])
                outcome.done.append(name)
            except Exception as err:  # noqa: BLE001 - one failed task must not stop the others
                failed(name, err, traceback.format_exc())
        return outcome
    from distributed import as_completed

    with client_for(workers, scheduler, per_gpu, processes) as client:
        outcome.dashboard = dashboard_address(client, local=not scheduler)
        if outcome.dashboard and on_dashboard:
            on_dashboard(outcome.dashboard)
        futures = {client.submit(function, *arguments, key=f"{description}-{name}-{os.urandom(4).hex()}",
                                 pure=False, priority=len(tasks) - order): name  # started in the order given
                   for order, (name, arguments) in enumerate(tasks.items())}
        for future in track(as_completed(futures), description, total=len(futures), enabled=progress,
                            unit=unit):
            name = futures[future]
            if future.status == "finished":
                outcome.done.append(name)
                continue
            error = future.exception()
            failed(name, error, "".join(traceback.format_exception(error)))
    return outcome


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
