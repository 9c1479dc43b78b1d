"""Errors raised by the algorithms. Each carries a one-line, user-facing message."""


class VflError(Exception):
    """Base class of every error `vfl` raises on purpose."""


class DataError(VflError):
    """A party's input data is unusable (missing IDs, NaN, bad labels, ...)."""


class PaillierError(VflError):
    """Misuse of the Paillier layer: weak key, mismatched keys, overflow."""


class WireFormatError(PaillierError):
    """Bytes that claim to be a ciphertext array are malformed or foreign."""


class TrainingError(VflError):
    """A training run cannot go on (divergence, unstable settings, degenerate model)."""


class PsiError(VflError):
    """Private set intersection cannot proceed (invalid points, empty intersection, bad IDs)."""
