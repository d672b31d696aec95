"""The Predict page for the Rev 2 -> Rev 2.1 transition (AppTest, embedded demo): dual codes, the follow-up
question's chips and its shared link, relabelling an uploaded Rev 2 file."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from nace_app.nomenclature.correspondence import load_correspondence
from tests.test_pages import APP, candidate_lines, code

SHOES = "shoe distribution and shop"  # its 90% set mixes 46.42 (wholesale) with 47.72 and 47.64 (retail)


@pytest.fixture
def page(monkeypatch) -> AppTest:
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def rev2_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Rev 2:")]


def answer_chips(at: AppTest):
    return next(p for p in at.pills if p.key == "follow_up_answer")


def test_each_candidate_shows_its_rev2_classes_and_a_class_without_one_says_so(page):
    code(page, "wholesale of other goods n.e.c.")  # 46.49 holds part of a Rev 2 class; 46.89 is new
    shown = [line.split("`")[1] for line in candidate_lines(page)]
    assert rev2_captions(page) == [load_correspondence().rev2_summary(c) for c in shown]
    assert "Rev 2: no Rev 2 link (new in Rev 2.1)" in rev2_captions(page)  # 46.89
    assert any("(partly)" in caption for caption in rev2_captions(page))


def test_a_set_of_several_codes_gets_answer_chips_and_a_click_keeps_and_re_ranks_its_codes(page):
    code(page, SHOES)
    chips = answer_chips(page)
    assert chips.options == ["It sells goods to other businesses (wholesale)", "It sells goods to the public (retail)"]
    chips.set_value("stage:retail").run()
    assert not page.exception
    kept = next(m.value for m in page.markdown if m.value.startswith("Kept after"))
    assert "`47.72`" in kept and "`46.42`" not in kept
    assert page.query_params["follow_up"] == "stage:retail"  # the shared link says what was asked and answered
    code(page, "bakery")  # a new description forgets the answer
    assert "follow_up" not in page.query_params


def test_a_shared_link_reopens_the_answer_and_ignores_a_malformed_one(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"text": SHOES, "follow_up": "stage:retail"})
    at.run()
    assert answer_chips(at).value == "stage:retail"
    assert any(m.value.startswith("Kept after") for m in at.markdown)
    bad = AppTest.from_file(APP, default_timeout=180)
    bad.query_params.update({"text": SHOES, "follow_up": "stage:<script>"})
    bad.run()
    assert answer_chips(bad).value is None and not bad.exception


def test_an_uploaded_rev2_file_is_relabelled_with_every_column_and_offered_for_download(page):
    content = b"id,naf,description\n1,0111,growing wheat\n2,47.91,online shoe shop\n3,47.91,\n4,99.99,x\n"
    page.file_uploader(key="relabel_file").set_value(("old.csv", content, "text/csv")).run()
    page.selectbox(key="relabel_code_column").set_value("naf")
    page.selectbox(key="relabel_text_column").set_value("description").run()
    next(b for b in page.button if b.label == "Relabel the file").click().run()
    assert not page.exception, page.exception
    frame = page.dataframe[-1].value
    assert list(frame["id"]) == ["1", "2", "3", "4"]
    assert list(frame["relabel_method"]) == ["table", "model", "unknown", "unknown"]
    assert any("no NACE Rev 2 class" in m.value and "99" in m.value for m in page.markdown)  # escaped user text
    assert [b.label for b in page.get("download_button")] == ["Excel (.xlsx)", "CSV"]
