"""Files in the cache folder, written so that a reader never sees half of one: next to their place, then renamed."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)
_unstored: list[str] = []  # the last reason a result could not be stored, for every page's notice


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """The file gets the umask's usual mode (0644 under 0022), as any other written file, not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".partial-{secrets.token_hex(8)}{path.suffix}")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def keep_in_cache(path: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Store a computed result in the cache folder; whether it was stored.

    A full or unwritable cache folder is not an error: the result is used without being stored (computed again next
    time), and `unstored_notice` says so in one line.
    """
    try:
        write_atomically(path, write)
    except OSError as exc:
        reason = (f"The cache folder cannot be written ({exc.strerror or exc} under {path.parent}): results are "
                  "computed each time instead of being stored.")
        if not _unstored or _unstored[-1] != reason:
            logger.warning("%s", reason)
        _unstored[:] = [reason]
        return False
    _unstored.clear()
    return True


def unstored_notice() -> str | None:
    """Why the last result could not be stored in the cache folder, while it keeps failing; None once one is stored."""
    return _unstored[-1] if _unstored else None
