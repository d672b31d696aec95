"""The one exception type for problems a user can cause (bad input, unreachable source), and its one-line form."""


class NaceAppError(Exception):
    """A user-facing error: its message is meant for a person and fits on one line."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
