"""NACE Rev 2.1 <-> Rev 2 at class level, from Eurostat's correspondence table (dual coding and relabelling)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

TABLE_FILE = "nace_rev2.1_to_rev2_correspondence.csv"
NO_REV2_LINK = "no Rev 2 link (new in Rev 2.1)"


@dataclass(frozen=True)
class Rev2Link:
    """One Rev 2 class linked to a Rev 2.1 class; `wholly_inside`: the whole Rev 2 class falls in the Rev 2.1 one."""

    code: str
    heading: str
    wholly_inside: bool


class Correspondence:
    """Both directions of the class-level links; unknown codes give empty answers, never errors."""

    def __init__(self, links: dict[str, list[Rev2Link]]):
        self._rev2 = links
        self._rev21: dict[str, list[str]] = {}
        self._rev2_headings: dict[str, str] = {}
        for rev21, rev2_links in links.items():
            for link in rev2_links:
                self._rev21.setdefault(link.code, []).append(rev21)
                self._rev2_headings[link.code] = link.heading

    def rev2_links(self, rev21_code: str) -> list[Rev2Link]:
        """The Rev 2 classes a Rev 2.1 class draws from, in the table's order (empty for 46.89 and unknown codes)."""
        return self._rev2.get(rev21_code, [])

    def rev2_codes(self, rev21_code: str) -> list[str]:
        return [link.code for link in self.rev2_links(rev21_code)]

    def rev21_codes(self, rev2_code: str) -> list[str]:
        """The Rev 2.1 classes a Rev 2 class went to (one for about three Rev 2 classes in four); empty if unknown."""
        return self._rev21.get(rev2_code, [])

    def is_rev21_class(self, code: str) -> bool:
        return code in self._rev2

    def is_rev2_class(self, code: str) -> bool:
        return code in self._rev21

    def rev2_heading(self, rev2_code: str) -> str:
        return self._rev2_headings.get(rev2_code, "")

    def rev2_summary(self, rev21_code: str) -> str:
        """'Rev 2: 10.71 (partly), 10.86 (wholly inside)' or the sentence saying there is no link."""
        links = self.rev2_links(rev21_code)
        if not links:
            return f"Rev 2: {NO_REV2_LINK}" if self.is_rev21_class(rev21_code) else "Rev 2: unknown code"
        return "Rev 2: " + ", ".join(f"{link.code} ({'wholly inside' if link.wholly_inside else 'partly'})"
                                     for link in links)


def rev2_cell(codes: list[str]) -> str:
    """A Rev 2 cell of a table: codes joined by spaces, or the words saying there is none."""
    return " ".join(codes) if codes else NO_REV2_LINK


@cache
def load_correspondence() -> Correspondence:
    text = resources.files("nace_app.resources").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    links: dict[str, list[Rev2Link]] = {}
    for row in csv.DictReader(text.splitlines()):
        if row["level"] != "4":
            continue
        rev2 = links.setdefault(row["rev21_code"], [])
        if row["rev2_code"]:
            rev2.append(Rev2Link(row["rev2_code"], row["rev2_heading"], row["rev2_fully_covered"] == "yes"))
    return Correspondence(links)
