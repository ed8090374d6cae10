"""Training denoisers: the loop, its settings and its resumable state."""

from biasprobe.training.loop import TrainingConfig, TrainingResult, state_path, train

__all__ = ["TrainingConfig", "TrainingResult", "state_path", "train"]
