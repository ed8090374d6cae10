"""Training denoisers: the loop, its settings and its resumable state; several models at once.

The settings (:mod:`biasprobe.training.settings`) import without torch, so the package's other names
load on first use."""

__all__ = ["TrainingConfig", "TrainingResult", "process_rank", "stackable", "state_path", "train", "train_stacked"]

_LAZY = {"TrainingConfig": "settings", "TrainingResult": "loop", "process_rank": "loop", "state_path": "loop",
         "train": "loop", "stackable": "stacked", "train_stacked": "stacked"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"biasprobe.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
