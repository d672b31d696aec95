"""Rev 2.1 <-> Rev 2 class links, checked against the rows of Eurostat's table as shipped."""

import csv
from importlib import resources

import pytest

from nace_app.nomenclature.correspondence import NO_REV2_LINK, load_correspondence, rev2_cell
from tests.conftest import REPO

SHARED_TABLE = REPO.parent / "shared" / "nace" / "nace_rev2.1_to_rev2_correspondence.csv"


@pytest.fixture(scope="module")
def class_rows() -> list[dict[str, str]]:
    text = resources.files("nace_app.resources").joinpath("nace_rev2.1_to_rev2_correspondence.csv").read_text("utf-8")
    return [row for row in csv.DictReader(text.splitlines()) if row["level"] == "4"]


def rows_of(class_rows, code: str) -> list[dict[str, str]]:
    return [row for row in class_rows if row["rev21_code"] == code]


def test_a_class_with_one_rev2_link_shows_that_class_and_that_it_lies_wholly_inside(class_rows):
    [row] = rows_of(class_rows, "01.11")
    [link] = load_correspondence().rev2_links("01.11")
    assert (link.code, link.heading, link.wholly_inside) == (row["rev2_code"], row["rev2_heading"], True)
    assert load_correspondence().rev2_summary("01.11") == "Rev 2: 01.11 (wholly inside)"


def test_a_class_with_several_links_lists_each_as_the_table_does(class_rows):
    correspondence = load_correspondence()
    for code in ("10.71", "01.13", "47.11"):
        rows = rows_of(class_rows, code)
        assert len(rows) > 1
        assert [(link.code, link.wholly_inside) for link in correspondence.rev2_links(code)] == [
            (row["rev2_code"], row["rev2_fully_covered"] == "yes") for row in rows]
    assert correspondence.rev2_summary("10.71") == "Rev 2: 10.71 (partly), 10.86 (partly)"
    assert rev2_cell(correspondence.rev2_codes("10.71")) == "10.71 10.86"


def test_46_89_has_no_rev2_link_and_says_so():
    correspondence = load_correspondence()
    assert correspondence.rev2_codes("46.89") == []
    assert correspondence.rev2_summary("46.89") == f"Rev 2: {NO_REV2_LINK}" and rev2_cell([]) == NO_REV2_LINK
    assert correspondence.rev2_summary("99.99") == "Rev 2: unknown code"


def test_both_directions_hold_the_same_links_and_the_table_counts(class_rows):
    correspondence = load_correspondence()
    rev2_classes = {row["rev2_code"] for row in class_rows if row["rev2_code"]}
    assert len({row["rev21_code"] for row in class_rows}) == 651 and len(rev2_classes) == 615  # +46.89's blank: 616
    for rev2 in rev2_classes:
        for rev21 in correspondence.rev21_codes(rev2):
            assert rev2 in correspondence.rev2_codes(rev21)
    one_to_one = sum(len(correspondence.rev21_codes(code)) == 1 for code in rev2_classes)
    assert one_to_one == 486  # the README's 487 counts 46.89's empty Rev 2 code as a class
    assert correspondence.rev21_codes("10.86") == ["10.61", "10.62", "10.71", "10.72", "10.73", "10.86"]
    assert correspondence.rev21_codes("99.99") == [] and not correspondence.is_rev2_class("99.99")


@pytest.mark.skipif(not SHARED_TABLE.is_file(), reason="the shared reference folder is not beside the repository")
def test_the_shipped_table_is_eurostats_as_published_to_the_project():
    shipped = resources.files("nace_app.resources").joinpath("nace_rev2.1_to_rev2_correspondence.csv").read_bytes()
    assert shipped == SHARED_TABLE.read_bytes()
