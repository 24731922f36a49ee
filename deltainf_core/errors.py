"""Domain exceptions: each carries one sentence a person can act on.

The CLI prints ``str(err)`` on one line and exits non-zero; pages show it with
``st.error``. Anything that is not a ``DeltaInfError`` is a bug, not bad input.
"""


class DeltaInfError(Exception):
    """Base class for every error caused by the user's input or environment."""


class ConfigError(DeltaInfError, ValueError):
    """An option is out of range or inconsistent with another option."""


class UnknownNameError(ConfigError):
    """A dataset/model/attack/detector/unlearner name is not registered."""


class DataError(DeltaInfError):
    """A dataset is missing, empty, unreadable or malformed."""


class CheckpointError(DeltaInfError):
    """A model checkpoint is corrupt, hostile or does not fit the architecture."""


class TrainingError(DeltaInfError):
    """Training diverged (NaN/inf loss) or cannot run on the given data."""


class UnlearningError(DeltaInfError):
    """An unlearning request cannot be carried out (e.g. empty forget set)."""


class InfluenceError(DeltaInfError):
    """Influence factors or scores could not be computed."""


class CacheError(DeltaInfError):
    """The cache folder cannot be used (read-only and missing an entry, damaged database)."""
