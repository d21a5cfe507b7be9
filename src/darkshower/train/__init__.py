"""Training framework shared by every method: ``train``, ``score``, ``load_run``.

See docs/training.md for the run directory and the config keys.
"""

from darkshower.train.config import TrainConfig
from darkshower.train.run import RunError, TrainingError, load_run
from darkshower.train.score import score
from darkshower.train.trainer import resolve_config, train

__all__ = ["TrainConfig", "RunError", "TrainingError", "load_run", "score", "train", "resolve_config"]
