"""One exceptions module for darkshower: every error a user can cause has a name and a fix."""

from __future__ import annotations


class DarkshowerError(Exception):
    """Base class; the CLI prints the message and exits with a non-zero code."""

    exit_code = 2


class ConfigError(DarkshowerError):
    """A configuration key or value is invalid (unknown key, out of range, wrong type)."""


class PythiaSettingError(DarkshowerError):
    """Pythia rejected a setting or failed to initialize."""


class DatasetError(DarkshowerError):
    """A dataset directory is missing, not a dataset, inconsistent, or corrupt."""


class InputFormatError(DarkshowerError):
    """An input file to an importer is of the wrong format or misses fields."""


class EvaluationError(DarkshowerError):
    """Score files, datasets or options of evaluate/search/report do not fit together."""


class RunError(DarkshowerError):
    """A training-run directory that cannot be used (missing, corrupt, incompatible)."""


class TrainingError(DarkshowerError):
    """Training stopped (e.g. non-finite loss); the last good checkpoint is kept."""


class ExportError(DarkshowerError):
    """A model could not be exported, or the exported model disagrees with torch."""


class WorkerError(DarkshowerError):
    """A worker process of a parallel stage (--jobs) died without reporting an error."""


class ServeError(DarkshowerError):
    """An inference server or remote-scoring client cannot start, reach, or use a model."""


class ClusterError(DarkshowerError):
    """A Dask executor or cluster cannot be used: the [dask] extra is missing, the scheduler cannot be
    reached, a task keeps failing, or the workers cannot see the output directory."""
