"""The corrections store: round trip, undo, latest correction wins, CSV export, and concurrent writers."""

import codecs
import csv
import io
import multiprocessing
import os
import threading

import pytest

from nace_app.review.corrections import CorrectionStore
from nace_app.settings.errors import NaceAppError
from tests.conftest import run_concurrently

ROWS_PER_WRITER = 200


def add_rows(folder, writer: str, count: int = ROWS_PER_WRITER) -> None:
    """One writer (a thread or a process) adding `count` corrections, each in its own transaction."""
    store = CorrectionStore(folder)
    for i in range(count):
        store.add(f"{writer} text {i}", "47.24", "10.71", "tiny", "abc123", comment=writer)


def test_a_correction_reads_back_with_every_field_from_a_new_store(tmp_path):
    added = CorrectionStore(tmp_path).add("  I sell croissants  ", "47.24", "10.71", "embedded", "f00d",
                                          comment="bakery, not a shop")
    [read] = CorrectionStore(tmp_path).list()
    assert read == added
    assert (read.text, read.proposed_code, read.corrected_code) == ("I sell croissants", "47.24", "10.71")
    assert (read.model_name, read.model_fingerprint, read.comment) == ("embedded", "f00d", "bakery, not a shop")
    assert read.created_at.endswith("+00:00") and not read.is_confirmation


def test_the_table_shown_on_the_page_has_times_as_datetimes_in_utc(tmp_path):
    added = CorrectionStore(tmp_path).add("bakery", "47.24", "10.71", "embedded", "f00d")
    when = CorrectionStore(tmp_path).table()["created_at"][0]
    assert when.tzinfo is None and when.isoformat() + "+00:00" == added.created_at


def test_a_confirmation_stores_the_proposed_code_as_the_corrected_one(tmp_path):
    confirmed = CorrectionStore(tmp_path).add("we build websites", "62.10", "62.10", "m", "f", comment="  ")
    assert confirmed.is_confirmation and confirmed.comment is None


def test_undo_deletes_only_that_correction_and_a_second_undo_is_refused(tmp_path):
    store = CorrectionStore(tmp_path)
    first = store.add("text one", "47.24", "10.71", "m", "f")
    second = store.add("text two", "47.24", "10.72", "m", "f")
    store.undo(first.id)
    assert store.list() == [second]
    with pytest.raises(NaceAppError, match="already undone"):
        store.undo(first.id)


def test_training_rows_keep_the_latest_correction_of_each_distinct_text(tmp_path):
    store = CorrectionStore(tmp_path)
    store.add("I sell bread", "47.24", "10.72", "m", "f")
    store.add("repair of cars", "95.31", "95.31", "m", "f")
    store.add("I sell bread", "47.24", "10.71", "m", "f")
    rows = store.training_rows()
    assert rows.columns == ["code", "label"]
    assert rows.rows() == [("95.31", "repair of cars"), ("10.71", "I sell bread")]


def test_list_filters_by_words_in_any_case_and_by_the_start_of_either_code(tmp_path):
    store = CorrectionStore(tmp_path)
    bakery = store.add("Pâtisserie FINE", "47.24", "10.71", "m", "f")
    cars = store.add("repair of cars", "95.31", "95.31", "m", "f", comment="garage")
    assert store.list(filter_text="pâtisserie") == [bakery]
    assert store.list(filter_text="GARAGE") == [cars]
    assert store.list(code="47") == [bakery]
    assert store.list(code="10.7") == [bakery]
    assert store.list() == [cars, bakery]  # newest first
    assert store.frame(code="95")["id"].to_list() == [cars.id]


def test_csv_export_has_a_bom_and_keeps_codes_as_quoted_text(tmp_path):
    store = CorrectionStore(tmp_path)
    store.add("élevage de vaches, lait", "01.41", "01.41", "m", "f")
    raw = store.to_csv_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    text = raw.decode("utf-8-sig")
    assert '"01.41"' in text
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert (row["text"], row["proposed_code"], row["corrected_code"]) == ("élevage de vaches, lait", "01.41", "01.41")


@pytest.mark.parametrize("code", ["10.7", "10", "C", "99.99", "", "10.71.1"])
def test_a_corrected_code_that_is_not_a_nace_class_is_refused(tmp_path, code):
    with pytest.raises(NaceAppError, match="not a NACE Rev 2.1 class code"):
        CorrectionStore(tmp_path).add("some text", "10.71", code, "m", "f")


def test_an_empty_text_is_refused_but_a_proposed_code_outside_the_nomenclature_is_kept(tmp_path):
    store = CorrectionStore(tmp_path)
    with pytest.raises(NaceAppError, match="text"):
        store.add("   ", "10.71", "10.71", "m", "f")
    assert store.add("old model output", "52.48", "47.24", "m", "f").proposed_code == "52.48"


def test_a_folder_that_cannot_hold_the_database_is_a_user_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(NaceAppError, match="cannot open the corrections database"):
        CorrectionStore(blocker)


def test_two_threads_writing_at_once_lose_nothing(tmp_path):
    run_concurrently([threading.Thread(target=add_rows, args=(tmp_path, name)) for name in ("left", "right")])
    assert_every_row_kept(CorrectionStore(tmp_path), ("left", "right"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")  # a fork of a process that runs torch threads is unsafe
    processes = [context.Process(target=add_rows, args=(tmp_path, name)) for name in ("first", "second")]
    run_concurrently(processes, timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    assert_every_row_kept(CorrectionStore(tmp_path), ("first", "second"))


def assert_every_row_kept(store: CorrectionStore, writers: tuple[str, ...]) -> None:
    corrections = store.list()
    assert len({c.id for c in corrections}) == len(corrections) == ROWS_PER_WRITER * len(writers)
    for writer in writers:
        assert {c.text for c in corrections if c.comment == writer} == {f"{writer} text {i}" for i in range(ROWS_PER_WRITER)}


def test_a_damaged_database_is_moved_aside_never_deleted_and_a_new_one_started(tmp_path):
    damaged = b"this is not an SQLite database at all" * 100
    (tmp_path / "corrections.sqlite3").write_bytes(damaged)
    store = CorrectionStore(tmp_path)
    saved = store.add("we bake bread", "10.71", "10.71", "m", "f")
    assert store.list() == [saved]
    (aside,) = store.damaged_copies()
    assert aside.read_bytes() == damaged and aside.parent == tmp_path
    assert "moved aside" in store.damage_notice() and aside.name in store.damage_notice()


def test_a_database_deleted_while_running_is_recreated_on_the_next_call(tmp_path):
    store = CorrectionStore(tmp_path)
    store.add("we bake bread", "10.71", "10.71", "m", "f")
    for leftover in tmp_path.glob("corrections.sqlite3*"):
        leftover.unlink()
    assert store.list() == [] and store.training_rows().height == 0
    assert store.add("taxi driver", "49.32", "49.32", "m", "f").id >= 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_database_refuses_a_correction_in_one_line(tmp_path):
    store = CorrectionStore(tmp_path)
    store.add("we bake bread", "10.71", "10.71", "m", "f")
    for path in tmp_path.glob("corrections.sqlite3*"):
        path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(NaceAppError, match="corrections database") as caught:
            store.add("taxi driver", "49.32", "49.32", "m", "f")
    finally:
        tmp_path.chmod(0o755)
    assert "\n" not in str(caught.value)
