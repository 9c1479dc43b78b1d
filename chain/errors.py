"""Errors raised by the chain layer."""


class ChainError(Exception):
    """Base class of every error `chain` raises on purpose."""
