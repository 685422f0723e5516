"""Exceptions raised by ltvcast.

Every error a user can cause derives from :class:`LtvcastError`; the CLI
prints its message (never a traceback) and exits with status 2.
"""


class LtvcastError(Exception):
    """Base class for errors caused by input, configuration or data."""


class DataError(LtvcastError):
    """Input data is unusable: a missing column, an unreadable file, bad values."""


class CutoffError(LtvcastError):
    """A cutoff or horizon does not fit the observed data."""


class ConvergenceError(LtvcastError):
    """A maximum-likelihood fit did not converge."""


class NotFittedError(LtvcastError):
    """A model method that needs fitted parameters was called before ``fit``."""


class SchemaMismatchError(LtvcastError):
    """A model's inputs differ from the features it was trained on (missing, extra or retyped)."""


class RegistryError(LtvcastError):
    """A model registry problem: unknown name or version, bad reference, unreadable or corrupt artifact."""
