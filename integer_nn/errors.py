"""Errors of the integer-domain library, all :class:`~nets.errors.UserError`: one clear line."""

from __future__ import annotations

from nets.errors import UserError


class QuantizationError(UserError):
    """A model cannot be quantised as asked (unsupported layer, int64 overflow, bad bits)."""


class IntModelFileError(UserError):
    """An IntModel file is missing, corrupt, truncated or from a newer format."""
