"""The one exception type for problems a user can cause (bad input, unreachable source)."""


class NaceAppError(Exception):
    """A user-facing error: its message is meant for a person and fits on one line."""
