"""Files in the cache folder, written so that a reader never sees half of one: next to their place, then renamed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
