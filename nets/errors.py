"""Errors meant for people: each says what was wrong, with the value, and what to do.

Command lines catch :class:`UserError` and print its message as one line, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad argument, missing or corrupt file)."""


class DataError(UserError):
    """A data set is missing, corrupt or not known."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, corrupt or of an unknown format."""


class ModelError(UserError):
    """An unknown model name or arguments that do not fit the model."""
