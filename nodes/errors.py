"""Errors raised by the party runtime and the command line."""


class NodeError(Exception):
    """Base class of every error `nodes` raises on purpose."""


class ConfigError(NodeError):
    """The job configuration is missing a key, has a bad value, or names a missing file."""


class NotYetAvailable(NodeError):
    """A command whose capability has not been built yet (exit code 2)."""
