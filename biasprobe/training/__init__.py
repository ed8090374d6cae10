"""Training denoisers: the loop, its settings and its resumable state."""

from biasprobe.training.loop import TrainingConfig, TrainingResult, process_rank, state_path, train

__all__ = ["TrainingConfig", "TrainingResult", "process_rank", "state_path", "train"]
