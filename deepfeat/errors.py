"""Errors users see as one clear line: what went wrong, with which file, and how to fix it.

Every error class is also a :class:`ValueError` (bad input), so scikit-learn and other callers
that expect ``ValueError`` for invalid parameters or data see one.
"""


class DeepfeatError(ValueError):
    """Base class; the CLI prints these as a one-line ``Error: ...`` and exits with status 2."""


class AudioError(DeepfeatError):
    """A clip cannot be decoded or is unusable (corrupt, empty, not audio)."""


class ManifestError(DeepfeatError):
    """A dataset folder or label file is malformed or names missing audio."""


class WeightsError(DeepfeatError):
    """Model weights are missing, corrupt or do not fit the network."""


class StoreError(DeepfeatError):
    """An HDF5 feature or scores store is missing, malformed or was made with another configuration."""


class ConfigError(DeepfeatError):
    """An unknown network, colour map, preset or an invalid parameter."""


class ClusterError(DeepfeatError):
    """A Dask cluster cannot be reached, or its workers died running a task."""
