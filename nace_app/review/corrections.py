"""Reviewers' corrections, kept in SQLite so that they survive restarts and feed the next training run.

Sessions run in different threads and servers in different processes, so nothing is shared but the file: each
call opens its own connection, the database is in WAL mode (readers never block the writer), a busy timeout makes
a writer wait for another instead of failing, and each write is one short `BEGIN IMMEDIATE` transaction.

Table `corrections`: id (increasing in commit order), created_at (UTC, ISO 8601), text, proposed_code (the
model's), corrected_code (equal to proposed_code for a confirmation), model_name, model_fingerprint, comment.
Only the corrected code must be a NACE class: it becomes a training label, while the proposed code is recorded
as the model gave it, so a model with codes outside the nomenclature can still be corrected.

Faults: a file that is not (or no longer) an SQLite database is moved aside as `corrections.sqlite3.damaged-<time>`,
never deleted, and a new database is started (`damage_notice` says so); a file deleted while the server runs is
created again on the next call; any other database error (read-only file, full disk) is a one-line `NaceAppError`.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from nace_app.nomenclature.structure import LEVELS, load_nomenclature
from nace_app.settings.errors import NaceAppError, first_line

logger = logging.getLogger(__name__)

DATABASE_NAME = "corrections.sqlite3"
DAMAGE_SIGNS = ("file is not a database", "malformed")
BUSY_TIMEOUT_SECONDS = 30.0
COLUMNS = ("id", "created_at", "text", "proposed_code", "corrected_code", "model_name", "model_fingerprint", "comment")
SCHEMA = """
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    text TEXT NOT NULL,
    proposed_code TEXT NOT NULL,
    corrected_code TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    comment TEXT
)
"""


@dataclass(frozen=True)
class Correction:
    id: int
    created_at: str
    text: str
    proposed_code: str
    corrected_code: str
    model_name: str
    model_fingerprint: str
    comment: str | None

    @property
    def is_confirmation(self) -> bool:
        return self.corrected_code == self.proposed_code

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_class_code(code: str) -> str:
    code = code.strip()
    entry = load_nomenclature().get(code)
    if entry is None or entry.level != len(LEVELS):
        raise NaceAppError(f"{code!r} is not a NACE Rev 2.1 class code (four digits, like 10.71)")
    return code


class CorrectionStore:
    """The corrections database `corrections.sqlite3` in `folder` (created on first use)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / DATABASE_NAME
        self._use(lambda connection: connection.execute("SELECT COUNT(*) FROM corrections").fetchone())

    def _create(self) -> None:
        """Build the database under a temporary name, then link it into place.

        Switching to WAL does not wait for the busy timeout, so two sessions creating the file at once could fail;
        a link never replaces a file, so the first database linked is the one every session uses.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".sqlite3", dir=self.path.parent)
        os.close(handle)
        try:
            connection = sqlite3.connect(tmp)
            try:
                connection.execute("PRAGMA journal_mode=WAL")  # stored in the file: every later connection uses it
                connection.execute(SCHEMA)
                connection.commit()
            finally:
                connection.close()
            with contextlib.suppress(FileExistsError):  # another session linked its database first
                os.link(tmp, self.path)
        finally:
            os.unlink(tmp)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def _use(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work` on a fresh connection to the database, created when missing and moved aside (once) when damaged."""
        for attempt in (1, 2):
            try:
                if not self.path.exists():
                    self._create()
                with self._connect() as connection:
                    return work(connection)
            except sqlite3.DatabaseError as exc:
                if attempt == 1 and any(sign in str(exc) for sign in DAMAGE_SIGNS) and self._move_aside_if_damaged():
                    continue
                raise NaceAppError(f"the corrections database {self.path} cannot be used: {first_line(exc)}") from exc
            except OSError as exc:
                raise NaceAppError(f"cannot open the corrections database {self.path}: {first_line(exc)}") from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _move_aside_if_damaged(self) -> bool:
        """Rename a damaged database (and its WAL files) out of the way; False if another session already did."""
        try:
            with self._connect() as connection:  # looked at again: another session may have replaced it meanwhile
                connection.execute("SELECT COUNT(*) FROM corrections").fetchone()
            return True
        except sqlite3.DatabaseError as exc:
            if not any(sign in str(exc) for sign in DAMAGE_SIGNS):
                return False
        aside = self.path.with_name(f"{DATABASE_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # moved by another session: a new database will be created
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        logger.warning("the corrections database %s was damaged: moved aside to %s, a new one started", self.path, aside)
        return True

    def damaged_copies(self) -> list[Path]:
        """Damaged databases moved aside in this folder, oldest first."""
        return sorted(p for p in self.path.parent.glob(f"{DATABASE_NAME}.damaged-*") if not p.name.endswith(("-wal", "-shm")))

    def damage_notice(self) -> str | None:
        """One line for the page when a damaged database was moved aside, or None."""
        copies = self.damaged_copies()
        if not copies:
            return None
        return (f"A damaged corrections database was moved aside (not deleted) as {copies[-1].name}, in "
                f"{self.path.parent}; a new one was started, and corrections made since are in it.")

    def add(self, text: str, proposed_code: str, corrected_code: str, model_name: str, model_fingerprint: str,
            comment: str | None = None) -> Correction:
        """Record one correction (or a confirmation, when both codes are equal) and return it with its id."""
        text, proposed_code = text.strip(), proposed_code.strip()
        if not text:
            raise NaceAppError("a correction needs the description's text")
        if not proposed_code:
            raise NaceAppError("a correction needs the code the model proposed")
        corrected_code = _check_class_code(corrected_code)
        comment = (comment or "").strip() or None
        created_at = datetime.now(UTC).isoformat(timespec="microseconds")
        values = (created_at, text, proposed_code, corrected_code, model_name, model_fingerprint, comment)
        def insert(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            cursor = connection.execute(f"INSERT INTO corrections ({', '.join(COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                        values)
            connection.execute("COMMIT")
            return int(cursor.lastrowid)

        return Correction(self._use(insert), *values)

    def undo(self, correction_id: int) -> None:
        """Delete one correction; an id already undone (perhaps in another session) is an error."""
        def delete(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            deleted = connection.execute("DELETE FROM corrections WHERE id = ?", (correction_id,)).rowcount
            connection.execute("COMMIT")
            return deleted

        if not self._use(delete):
            raise NaceAppError(f"there is no correction #{correction_id} (already undone?)")

    def list(self, filter_text: str | None = None, code: str | None = None) -> list[Correction]:
        """Newest first; `filter_text` matches words of the text or comment (any case), `code` a code's start."""
        rows = self._use(lambda connection: connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM corrections ORDER BY id DESC").fetchall())
        corrections = [Correction(*row) for row in rows]
        if filter_text and filter_text.strip():
            needle = filter_text.strip().casefold()
            corrections = [c for c in corrections if needle in c.text.casefold() or needle in (c.comment or "").casefold()]
        if code and code.strip():
            corrections = [c for c in corrections if c.corrected_code.startswith(code.strip())
                           or c.proposed_code.startswith(code.strip())]
        return corrections

    def frame(self, filter_text: str | None = None, code: str | None = None) -> pl.DataFrame:
        """`list` as a table, one column per field: what the page shows and the CSV holds."""
        schema = {name: pl.Int64 if name == "id" else pl.String for name in COLUMNS}
        return pl.DataFrame([c.to_dict() for c in self.list(filter_text, code)], schema=schema)

    def table(self, filter_text: str | None = None, code: str | None = None) -> pl.DataFrame:
        """`frame` with `created_at` as datetimes in UTC (without a zone, which tables would convert to the viewer's),
        that a page shows as a date rather than ISO text."""
        return self.frame(filter_text, code).with_columns(
            pl.col("created_at").str.to_datetime(time_zone="UTC").dt.replace_time_zone(None))

    def to_csv_bytes(self) -> bytes:
        """UTF-8 with a BOM (spreadsheets then read accents right); every text field quoted, so codes stay text."""
        return codecs.BOM_UTF8 + self.frame().write_csv(quote_style="non_numeric").encode("utf-8")

    def training_rows(self) -> pl.DataFrame:
        """Columns code, label: for each distinct text the code of its latest correction, oldest text first."""
        rows = self._use(lambda connection: connection.execute(
            "SELECT corrected_code, text FROM corrections WHERE id IN (SELECT MAX(id) FROM corrections GROUP BY text)"
            " ORDER BY id").fetchall())
        return pl.DataFrame(rows, schema={"code": pl.String, "label": pl.String}, orient="row")
