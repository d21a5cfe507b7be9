"""The training configuration (``TrainConfig``); defined with the run-directory format in
:mod:`darkshower.models.runconfig` and re-exported here for the trainer and its users."""

from darkshower.models.runconfig import DataConfig, EarlyStoppingConfig, OptimizerConfig, ScheduleConfig, TrainConfig

__all__ = ["TrainConfig", "OptimizerConfig", "ScheduleConfig", "EarlyStoppingConfig", "DataConfig"]
