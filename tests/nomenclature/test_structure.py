import csv

from nace_app.nomenclature.structure import UNKNOWN_HEADING, load_nomenclature
from tests.conftest import SHARED_STRUCTURE


def test_packaged_structure_is_the_shared_nace_rev21_file():
    from importlib import resources

    packaged = resources.files("nace_app.resources").joinpath("nace_rev2.1_structure.csv").read_text(encoding="utf-8")
    assert packaged == SHARED_STRUCTURE.read_text(encoding="utf-8")


def test_counts_per_level_match_the_source():
    rows = list(csv.DictReader(SHARED_STRUCTURE.open(encoding="utf-8")))
    nomenclature = load_nomenclature()
    assert len(nomenclature.codes("class")) == sum(r["level"] == "4" for r in rows) == 651
    assert len(nomenclature.codes("section")) == 22


def test_heading_path_and_truncation_of_a_class():
    nomenclature = load_nomenclature()
    assert nomenclature.heading("10.71").startswith("Manufacture of bread")
    path = nomenclature.path("10.71")
    assert [(s.level, s.code) for s in path] == [("section", "C"), ("division", "10"), ("group", "10.7"),
                                                 ("class", "10.71")]
    assert nomenclature.truncate("10.71", "section") == "C"
    assert nomenclature.truncate("10.71", "division") == "10"
    assert nomenclature.truncate("10.71", "group") == "10.7"
    assert nomenclature.truncate("10.71", "class") == "10.71"


def test_unknown_code_is_flagged_not_raised():
    nomenclature = load_nomenclature()
    assert not nomenclature.is_known("99.99")
    assert nomenclature.heading("99.99") == UNKNOWN_HEADING
    assert nomenclature.path("99.99") == []
    assert nomenclature.truncate("99.99", "section") == "99.99"
    assert nomenclature.section_of("99.99") == "?"
