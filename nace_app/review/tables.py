"""The Review page's tables: test rows with their predictions, filters, headline figures. Pure polars/numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import polars.selectors as cs

from nace_app.explain.class_words import PULLS_AWAY, TOWARD
from nace_app.model.ranking import confidence_index, top_k_indices
from nace_app.nomenclature.correspondence import load_correspondence, rev2_cell
from nace_app.nomenclature.structure import Nomenclature
from nace_app.review import metrics
from nace_app.review.conformal import CoverageReport

SCORE_COLUMNS = {metrics.TOP1_PROBABILITY: "probability", metrics.CONFIDENCE_INDEX: "confidence_index"}
PAGE_SIZE = 25
NEVER_CONFUSED = "–"  # a class none of whose rows went wrong: a dash, not the word "None"


def test_table(test: pl.DataFrame, probabilities: np.ndarray, labels: list[str],
               nomenclature: Nomenclature) -> pl.DataFrame:
    """One row per test description: truth, prediction, top-5, probabilities and whether the model knows the code."""
    label_index = {code: i for i, code in enumerate(labels)}
    labels_array = np.asarray(labels, dtype=object)
    top = top_k_indices(probabilities, 5)
    rows = np.arange(len(probabilities))
    true_codes = test["code"].to_list()
    true_index = np.array([label_index.get(c, -1) for c in true_codes])
    predicted = labels_array[top[:, 0]].tolist() if len(top) else []
    true_probability = np.where(true_index >= 0, probabilities[rows, np.maximum(true_index, 0)], 0.0)
    return pl.DataFrame({
        "row": np.arange(len(true_codes)),
        "text": test["label"].to_list(),
        "true_code": true_codes,
        "true_heading": [nomenclature.heading(c) for c in true_codes],
        "true_section": [nomenclature.section_of(c) for c in true_codes],
        "predicted_code": predicted,
        "predicted_heading": [nomenclature.heading(c) for c in predicted],
        "probability": probabilities[rows, top[:, 0]] if len(top) else np.zeros(0),
        "confidence_index": confidence_index(probabilities) if len(top) else np.zeros(0),
        "true_probability": true_probability,
        "correct": [t == p for t, p in zip(true_codes, predicted, strict=True)],
        "in_top5": (top == true_index[:, None]).any(axis=1) if len(top) else np.zeros(0, dtype=bool),
        "known_to_model": true_index >= 0,
        "top5": [[labels[i] for i in row] for row in top],
    }, schema_overrides={"top5": pl.List(pl.String)})


@dataclass(frozen=True)
class Filters:
    true_code: str = ""
    section: str = ""
    predicted_code: str = ""
    probability_range: tuple[float, float] = (0.0, 1.0)
    outcome: str = "incorrect"  # "all", "correct" or "incorrect"
    search: str = ""


def apply_filters(table: pl.DataFrame, filters: Filters) -> pl.DataFrame:
    result = table
    if filters.true_code:
        result = result.filter(pl.col("true_code").str.starts_with(filters.true_code))
    if filters.section:
        result = result.filter(pl.col("true_section") == filters.section)
    if filters.predicted_code:
        result = result.filter(pl.col("predicted_code").str.starts_with(filters.predicted_code))
    low, high = filters.probability_range
    result = result.filter(pl.col("probability").is_between(low, high))
    if filters.outcome == "correct":
        result = result.filter(pl.col("correct"))
    elif filters.outcome == "incorrect":
        result = result.filter(~pl.col("correct"))
    if filters.search.strip():
        result = result.filter(pl.col("text").str.contains(filters.search.strip(), literal=True, strict=False)
                               | pl.col("text").str.to_lowercase().str.contains(filters.search.strip().lower(),
                                                                                literal=True))
    return result


def per_class(table: pl.DataFrame, nomenclature: Nomenclature) -> pl.DataFrame:
    scores = metrics.per_class_scores(table["true_code"].to_list(), table["predicted_code"].to_list())
    return scores.with_columns(
        pl.col("most_confused_with").fill_null(NEVER_CONFUSED),
        heading=pl.Series([nomenclature.heading(c) for c in scores["code"].to_list()], dtype=pl.String),
        section=pl.Series([nomenclature.section_of(c) for c in scores["code"].to_list()], dtype=pl.String),
    ).select("code", "heading", "section", "support", "precision", "recall", "f1", "most_confused_with",
             "confused_count")


def search_classes(classes: pl.DataFrame, query: str, section: str, rows: pl.DataFrame | None = None) -> pl.DataFrame:
    """Classes whose code starts with, or whose heading or test descriptions contain, every word of `query`.

    Searching the descriptions too lets "bakery" find 10.71, whose heading never says it.
    """
    result = classes
    if section:
        result = result.filter(pl.col("section") == section)
    words = query.lower().split()
    if not words:
        return result
    texts = (rows.group_by("true_code").agg(pl.col("text").str.to_lowercase().str.join(" ").alias("texts"))
             if rows is not None else pl.DataFrame(schema={"true_code": pl.String, "texts": pl.String}))
    result = result.join(texts, left_on="code", right_on="true_code", how="left").with_columns(
        searchable=pl.concat_str(pl.col("heading").str.to_lowercase(), pl.col("texts").fill_null(""), separator=" "))
    for word in words:
        result = result.filter(pl.col("code").str.starts_with(word) | pl.col("searchable").str.contains(word, literal=True))
    return result.drop("texts", "searchable")


def export_rows(rows: pl.DataFrame, decimals: int) -> pl.DataFrame:
    """The error browser's rows for a spreadsheet: the top-5 codes as one space-separated cell, scores rounded."""
    return rows.with_columns(pl.col("top5").list.join(" "), cs.float().round(decimals))


def page_of(frame: pl.DataFrame, page: int, size: int = PAGE_SIZE) -> pl.DataFrame:
    return frame.slice((page - 1) * size, size)


def page_count(frame: pl.DataFrame, size: int = PAGE_SIZE) -> int:
    return max((frame.height - 1) // size + 1, 1)


def row_candidates(row: dict, probabilities: np.ndarray, label_index: dict[str, int],
                   nomenclature: Nomenclature) -> pl.DataFrame:
    """The row's top-5 with headings and probabilities, plus the true code when it is not among them."""
    codes = list(row["top5"])
    if row["true_code"] not in codes:
        codes.append(row["true_code"])
    probs = [float(probabilities[row["row"], label_index[c]]) if c in label_index else None for c in codes]
    ranks = [str(i + 1) for i in range(len(row["top5"]))] + (["true"] if len(codes) > len(row["top5"]) else [])
    return pl.DataFrame({"rank": ranks, "code": codes, "heading": [nomenclature.heading(c) for c in codes],
                         "probability": probs}, schema_overrides={"probability": pl.Float64})


def with_headings(confusions: pl.DataFrame, nomenclature: Nomenclature) -> pl.DataFrame:
    return confusions.with_columns(
        true_heading=pl.Series([nomenclature.heading(c) for c in confusions["true_code"].to_list()], dtype=pl.String),
        predicted_heading=pl.Series([nomenclature.heading(c) for c in confusions["predicted_code"].to_list()],
                                    dtype=pl.String),
    ).select("true_code", "true_heading", "predicted_code", "predicted_heading", "count")


def automation_score(table: pl.DataFrame, score_name: str) -> np.ndarray:
    return table[SCORE_COLUMNS[score_name]].to_numpy()


def largest_confusion(labels: list[str], matrix: np.ndarray) -> tuple[str, str] | None:
    """The (true, predicted) pair of the largest off-diagonal cell, the matrix's default selection."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    if off.max() == 0:
        return None
    true_index, predicted_index = np.unravel_index(int(off.argmax()), off.shape)
    return labels[true_index], labels[predicted_index]


def cell_examples(table: pl.DataFrame, level: str, true_group: str, predicted_group: str,
                  nomenclature: Nomenclature) -> pl.DataFrame:
    """Test rows whose truth and prediction truncate to the given pair at `level`."""
    true_level = [nomenclature.truncate(c, level) for c in table["true_code"].to_list()]
    predicted_level = [nomenclature.truncate(c, level) for c in table["predicted_code"].to_list()]
    mask = [(t == true_group and p == predicted_group) for t, p in zip(true_level, predicted_level, strict=True)]
    return table.filter(pl.Series(mask, dtype=pl.Boolean))


def training_overlap_note(training: dict, data_fingerprint: str) -> tuple[bool, str]:
    """(safe, message): whether the model's training split is known to be disjoint from this test split."""
    if training.get("data_fingerprint") == data_fingerprint:
        rows = "train and validation splits" if training.get("early_stopping_on") == "an independent set" else "train split"
        return True, (f"This model was trained here on the {rows} of this very data: the test split below was "
                      "never seen in training.")
    if training:
        return False, ("This model was trained on other data: its training rows may overlap this test split, "
                       "so the figures may be optimistic.")
    return False, ("This model's training split is unknown (as for the published pretrained model): it may "
                   "overlap this test split, so the figures may be optimistic.")


def set_of_one_automation(report: CoverageReport) -> dict[str, float]:
    """"Code automatically when the set holds one code", in the keys of `metrics.automation_at` for the same cards."""
    automated = round(report.singleton_share * report.rows)
    errors = round(automated * (1 - report.singleton_accuracy)) if automated else 0
    return {"automated_share": report.singleton_share, "automated_count": automated,
            "automated_accuracy": report.singleton_accuracy if automated else float("nan"),
            "confident_errors": errors, "manual_count": report.rows - automated}


def words_of_class(words: pl.DataFrame, code: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(words that drive the class, words that pull its rows to a wrong code) from `class_words.class_words`."""
    rows = words.filter(pl.col("code") == code)
    toward = rows.filter(pl.col("kind") == TOWARD).select("rank", "word", "mean_score", "rows")
    away = rows.filter(pl.col("kind") == PULLS_AWAY).select("rank", "word", "wrong_code", "rows", "mean_score")
    return toward, away


def with_rev2(frame: pl.DataFrame, code_columns: dict[str, str]) -> pl.DataFrame:
    """Each Rev 2.1 code column's Rev 2 classes beside it ({code column: new column}), joined by spaces; empty for a
    code that is no Rev 2.1 class."""
    correspondence = load_correspondence()
    return frame.with_columns(**{
        name: pl.Series([rev2_cell(correspondence.rev2_codes(code)) if correspondence.is_rev21_class(code) else None
                         for code in frame[column].to_list()], dtype=pl.String)
        for column, name in code_columns.items()})
