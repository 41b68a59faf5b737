"""Errors that end a command, each with the exit code of the CLI contract."""


class MailsegError(Exception):
    """Base: a one-line message meant for the user."""

    exit_code = 1


class UsageError(MailsegError):
    """Wrong flags, bad config or a conflicting request (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """conf/*.yaml or --config holds something unexpected (exit 2)."""


class InputDataError(MailsegError):
    """An input file cannot be used as it is (exit 3)."""

    exit_code = 3


class ClusterError(MailsegError):
    """The Dask scheduler cannot be reached or the cluster failed (exit 4)."""

    exit_code = 4
