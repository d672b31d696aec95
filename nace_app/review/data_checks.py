"""Warnings about the data behind the test figures: thin classes, test rows that are training rows in disguise,
and accuracy per register (or source) when the data says where each row comes from. Pure polars."""

from __future__ import annotations

import re
import unicodedata

import polars as pl

from nace_app.nomenclature.structure import Nomenclature

MIN_TEST_ROWS = 5  # below this a class's recall moves by 20 points with one row: too few to judge
GROUP_COLUMNS = ("register", "source")
SAME_TEXT, SAME_WORDS = "same text once normalised", "same words, another order"
_NOT_WORD = re.compile(r"[\W_]+")


def normalised(text: str) -> str:
    """Lower case, accents and punctuation gone, single spaces: what a person would call the same description."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", plain).strip()


def word_set(text: str) -> str:
    """The set of normalised words, as a sortable key."""
    return " ".join(sorted(set(normalised(text).split())))


def class_counts(train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame, nomenclature: Nomenclature,
                 min_test_rows: int = MIN_TEST_ROWS) -> pl.DataFrame:
    """Rows per class in each split, thinnest test classes first; `too_few` flags classes too thin to judge."""
    counts = None
    for name, frame in (("train", train), ("validation", validation), ("test", test)):
        split_counts = frame.group_by("code").agg(pl.len().cast(pl.Int64).alias(name))
        counts = split_counts if counts is None else counts.join(split_counts, on="code", how="full", coalesce=True)
    counts = counts.fill_null(0).with_columns(total=pl.col("train") + pl.col("validation") + pl.col("test"),
                                              too_few=pl.col("test") < min_test_rows)
    headings = pl.Series([nomenclature.heading(c) for c in counts["code"].to_list()], dtype=pl.String)
    return (counts.with_columns(heading=headings).sort(["test", "code"])
            .select("code", "heading", "train", "validation", "test", "total", "too_few"))


def shared_descriptions(train: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Test rows whose description is also a training row's, once normalised or as a set of words.

    One line per test row (its first training match): row (position in the test split), text, code, the training
    text and code, `kind` (SAME_TEXT or SAME_WORDS) and `same_code`.
    """
    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        texts = frame["label"].to_list()
        return frame.select(text="label", code="code").with_columns(
            exact=pl.Series([normalised(t) for t in texts], dtype=pl.String),
            words=pl.Series([word_set(t) for t in texts], dtype=pl.String))

    test_keys = keyed(test).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    train_keys = keyed(train).filter(pl.col("words") != "")
    matches = []
    for key, kind in (("exact", SAME_TEXT), ("words", SAME_WORDS)):
        firsts = train_keys.unique(subset=key, keep="first", maintain_order=True).select(
            key, train_text="text", train_code="code")
        matches.append(test_keys.join(firsts, on=key, how="inner").with_columns(kind=pl.lit(kind)))
    both = pl.concat(matches).unique(subset="row", keep="first", maintain_order=True).sort("row")
    return both.select("row", "text", "code", "train_text", "train_code", "kind",
                       same_code=pl.col("code") == pl.col("train_code"))


def accuracy_with_and_without(correct: list[bool], shared_rows: list[int]) -> dict[str, float | int | None]:
    """Top-1 accuracy on the test rows shared with training against the others: how much the duplicates inflate."""
    shared = set(shared_rows)
    inside = [c for i, c in enumerate(correct) if i in shared]
    outside = [c for i, c in enumerate(correct) if i not in shared]
    return {"shared_rows": len(inside), "shared_accuracy": sum(inside) / len(inside) if inside else None,
            "other_rows": len(outside), "other_accuracy": sum(outside) / len(outside) if outside else None}


def group_column(test: pl.DataFrame) -> str | None:
    """The column that says where each row comes from (register or source), if the data has one."""
    return next((c for c in GROUP_COLUMNS if c in test.columns), None)


def accuracy_by_group(groups: list[str | None], correct: list[bool], in_top5: list[bool]) -> pl.DataFrame:
    """Rows, top-1 and top-5 accuracy per group, lowest top-1 first."""
    frame = pl.DataFrame({"group": groups, "correct": correct, "in_top5": in_top5},
                         schema={"group": pl.String, "correct": pl.Boolean, "in_top5": pl.Boolean})
    return (frame.with_columns(pl.col("group").fill_null("(none)"))
            .group_by("group").agg(rows=pl.len().cast(pl.Int64), top1=pl.col("correct").mean(),
                                   top5=pl.col("in_top5").mean())
            .sort(["top1", "group"]))
