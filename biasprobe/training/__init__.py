"""Training denoisers: the loop, its settings and its resumable state; several models at once."""

from biasprobe.training.loop import TrainingConfig, TrainingResult, process_rank, state_path, train
from biasprobe.training.stacked import stackable, train_stacked

__all__ = ["TrainingConfig", "TrainingResult", "process_rank", "stackable", "state_path", "train", "train_stacked"]
