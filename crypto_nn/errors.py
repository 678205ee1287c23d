"""Errors of the encrypted-inference layer; all are one-line :class:`UserError`s."""

from __future__ import annotations

from nets.errors import UserError


class CompileError(UserError):
    """A model cannot be turned into a homomorphic plan (too deep, unsupported layer, ...)."""


class ContextError(UserError):
    """A context or ciphertext payload is malformed, holds a secret, or does not fit the plan."""
