"""Training and fine-tuning: the run's set-up, the loop, its schedule, checkpoints and logs."""

from fasterrcnn.training.loop import train
from fasterrcnn.training.options import TrainingError, TrainOptions, TrainResult
from fasterrcnn.training.start import PreparedRun, prepare_training, prepare_training_model

__all__ = [
    "PreparedRun",
    "TrainOptions",
    "TrainResult",
    "TrainingError",
    "prepare_training",
    "prepare_training_model",
    "train",
]
