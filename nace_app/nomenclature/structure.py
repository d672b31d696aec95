"""NACE Rev 2.1: headings, the class -> group -> division -> section path, truncation to any level."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

LEVELS = ("section", "division", "group", "class")
UNKNOWN_HEADING = "unknown code"


@dataclass(frozen=True)
class NaceEntry:
    code: str
    level: int
    parent: str | None
    section: str
    heading: str


@dataclass(frozen=True)
class PathStep:
    level: str
    code: str
    heading: str


class Nomenclature:
    """Lookup over the NACE Rev 2.1 structure; unknown codes are reported, never raised."""

    def __init__(self, entries: list[NaceEntry]):
        self._entries = {entry.code: entry for entry in entries}

    def __contains__(self, code: object) -> bool:
        return code in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, code: str) -> NaceEntry | None:
        return self._entries.get(code)

    def is_known(self, code: str) -> bool:
        return code in self._entries

    def heading(self, code: str) -> str:
        entry = self._entries.get(code)
        return entry.heading if entry else UNKNOWN_HEADING

    def codes(self, level: str | int = "class") -> list[str]:
        wanted = level if isinstance(level, int) else LEVELS.index(level) + 1
        return [code for code, entry in self._entries.items() if entry.level == wanted]

    def path(self, code: str) -> list[PathStep]:
        """From the section down to the code itself; empty for an unknown code."""
        steps: list[PathStep] = []
        entry = self._entries.get(code)
        while entry is not None:
            steps.append(PathStep(LEVELS[entry.level - 1], entry.code, entry.heading))
            entry = self._entries.get(entry.parent) if entry.parent else None
        return steps[::-1]

    def truncate(self, code: str, level: str) -> str:
        """The code's ancestor at `level` ('section', 'division', 'group', 'class'); unknown codes stay as they are."""
        entry = self._entries.get(code)
        target = LEVELS.index(level) + 1
        if entry is None or entry.level < target:
            return code
        while entry.level > target:
            entry = self._entries[entry.parent]
        return entry.code

    def section_of(self, code: str) -> str:
        entry = self._entries.get(code)
        return entry.section if entry else "?"


@cache
def load_nomenclature() -> Nomenclature:
    text = resources.files("nace_app.resources").joinpath("nace_rev2.1_structure.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return Nomenclature(
        [
            NaceEntry(r["code"], int(r["level"]), r["parent_code"] or None, r["section"], r["heading"])
            for r in rows
        ]
    )
