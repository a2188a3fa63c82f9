"""Training: a task-agnostic Trainer, LM and classification tasks, checkpoints, runs, inference.

from archlab.train import Trainer, TrainConfig, LMTask
result = Trainer(model, task, TrainConfig(max_steps=2000, precision="bf16")).fit()
"""

from archlab.train.checkpoint import load_model, read_run_config, save_checkpoint
from archlab.train.trainer import Callback, Task, TrainConfig, Trainer, TrainResult

__all__ = [
    "Callback",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_model",
    "read_run_config",
    "save_checkpoint",
]
