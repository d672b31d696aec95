"""Per-class explanations over a labelled test split: which words carry a class, which pull its rows away.

Every test row whose code the model knows is explained with the integrated gradients of `nace_app.explain.attributions`
(batched over texts by `explain_texts`, which tests check equal to the one-text function); a word's score in a
row is the sum over its occurrences, words compared in lowercase, punctuation left out.

- `toward`: attribution toward the row's true code, averaged over all the class's test rows (a row without the
  word counts 0, so a word must be both strong and frequent to rank high).
- `pulls_away`: for the class's misclassified rows, the contrast "attribution toward the predicted (wrong) code
  minus attribution toward the true code", which is the integrated gradient of the logit margin between them.
  The contrast, not the wrong code's attribution alone, because softmax ignores what a word adds to every logit
  alike: a word that pushes both codes equally moves no probability and does not cause the error. Words rank by
  the number of errors they pull (`rows`), then by their mean contrast; `wrong_code` is the code they pull to
  most often. Function words ("and", "to", `FUNCTION_WORDS`) are left out of this list: they are in most rows,
  so they lead a count of rows while telling a reviewer nothing about the error.

`mean_score` is the sum of a word's scores over the rows considered divided by their number (`class_rows`:
the class's test rows for `toward`, its misclassified rows for `pulls_away`); `rows` counts the rows where the word
pushes that way (score > 0). All words are computed once per (model, test data) and cached as parquet; the top
words are picked from the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from nace_app.data.tables import fingerprint
from nace_app.explain.attributions import STEP_SCHEDULE, TOLERANCE, Explanation, WordScore, gauss_legendre, integrated_gradients, words_of
from nace_app.model.classifier import Classifier
from nace_app.model.tokenization import Encoded
from nace_app.settings.cachefiles import keep_in_cache

if TYPE_CHECKING:
    import torch

TOWARD, PULLS_AWAY = "toward", "pulls_away"
PATH_ROWS = 512  # interpolation rows (candidates x steps) per backward pass: fastest on the embedded model
TEXTS_PER_CALL = 256  # texts between progress reports
FUNCTION_WORDS = frozenset("""
a an the and or but nor so yet if then than as of to in on at by for from with without into onto over under about
after before between through during per via up down out off is are was were be been being am do does did has have
had having it its it's this that these those there here i me my mine we us our ours you your yours he him his she her
they them their theirs who whom whose which what where when how all any both each some such no not only own same
too very can will just also etc & + -
""".split())  # English: the descriptions the models read are in English


def _one_pass(classifier: Classifier, encoded: Encoded, rows: list[int], codes: list[list[str]],
              steps: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Token scores (candidates, width) of each row's text at `steps`, and the logits at both ends of the paths.

    The texts are padded to the longest of them, on the cut path. Exact: padding columns are padding in both the
    input and the baseline, so their path is constant and their attribution zero.
    """
    import torch

    ids = [encoded.ids[i] for i in rows]
    input_ids, mask = classifier.explanation_inputs(ids, encoded.full_width, encoded.pad_id)
    owner = torch.tensor([t for t, text_codes in enumerate(codes) for _ in text_codes])
    targets = torch.tensor([classifier.label_index[c] for text_codes in codes for c in text_codes])
    with torch.inference_mode(False), torch.enable_grad():
        with torch.no_grad():
            emb_input = classifier.embed(input_ids)
            emb_reference = classifier.embed(torch.full_like(input_ids, encoded.pad_id))
            ends = classifier.logits_from_embeddings(torch.cat([emb_input, emb_reference]), input_ids.repeat(2, 1),
                                                     mask.repeat(2, 1), encoded.full_width)
        emb_input, emb_reference = emb_input[owner], emb_reference[owner]
        difference = emb_input - emb_reference
        alphas, weights = gauss_legendre(steps)
        path = emb_reference[:, None] + alphas[None, :, None, None] * difference[:, None]  # (pairs, steps, width, dim)
        batch = path.flatten(0, 1).requires_grad_(True)
        logits = classifier.logits_from_embeddings(batch, input_ids[owner].repeat_interleave(steps, 0),
                                                   mask[owner].repeat_interleave(steps, 0), encoded.full_width)
        chosen = logits[torch.arange(len(batch)), targets.repeat_interleave(steps)].sum()
        (gradients,) = torch.autograd.grad(chosen, batch)
    mean_gradient = (gradients.view(*path.shape) * weights[None, :, None, None]).sum(1)
    scores = (mean_gradient * difference).sum(-1).double()
    return list(scores.split([len(c) for c in codes])), ends.double()


def explain_texts(classifier: Classifier, texts: list[str], codes: list[list[str]]) -> list[list[Explanation]]:
    """`integrated_gradients(classifier, text, codes)` for many texts, several texts per batched pass.

    Each text keeps the first step count at which all its candidates converge, as the one-text function does.
    Architectures without the cut path are explained one text at a time.
    """
    import torch

    if not texts:
        return []
    if not classifier.forward.can_cut:
        return [integrated_gradients(classifier, text, text_codes) for text, text_codes in zip(texts, codes, strict=True)]
    encoded = classifier.encode(texts, with_offsets=True)
    results: list[list[Explanation]] = [[] for _ in texts]
    pending = sorted(range(len(texts)), key=lambda i: len(encoded.ids[i]))  # similar lengths share a pass
    for steps in STEP_SCHEDULE:
        per_pass = max(1, PATH_ROWS // (steps * max((len(codes[i]) for i in pending), default=1)))
        unconverged = []
        for start in range(0, len(pending), per_pass):
            group = pending[start : start + per_pass]
            scores, ends = _one_pass(classifier, encoded, group, [codes[i] for i in group], steps)
            probabilities = torch.softmax(ends[: len(group)].double() / classifier.temperature, dim=1)
            for g, (i, token_scores) in enumerate(zip(group, scores, strict=True)):
                length = len(encoded.ids[i])
                explanations = [Explanation(
                    code=code, probability=float(probabilities[g, column]),
                    words=words_of(texts[i], encoded.offsets[i], encoded.word_ids[i], row[:length].numpy()),
                    token_scores=row[:length].numpy(), attribution_total=float(row.sum()),
                    logit_delta=float(ends[g, column] - ends[len(group) + g, column]), steps=steps,
                    offsets=encoded.offsets[i], word_ids=encoded.word_ids[i])
                    for code, column, row in zip(codes[i], [classifier.label_index[c] for c in codes[i]], token_scores,
                                                 strict=True)]
                if steps == STEP_SCHEDULE[-1] or all(e.relative_gap <= TOLERANCE for e in explanations):
                    results[i] = explanations
                else:
                    unconverged.append(i)
        pending = unconverged
        if not pending:
            break
    return results


def _word_scores(words: list[WordScore]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for word in words:
        key = word.word.lower()
        if any(char.isalnum() for char in key):
            scores[key] = scores.get(key, 0.0) + word.score
    return scores


def all_class_words(classifier: Classifier, test: pl.DataFrame,
                    progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """Every (code, kind, word) of the test rows with its mean score, uncached and unranked."""
    known = test.filter(pl.col("code").is_in(classifier.labels))
    texts, true_codes = known["label"].to_list(), known["code"].to_list()
    predicted_codes = [classifier.labels[i] for i in classifier.predict_proba(texts).argmax(axis=1)]
    records: dict[str, list] = {"code": [], "kind": [], "word": [], "score": [], "wrong_code": []}

    def record(code: str, kind: str, scores: dict[str, float], wrong_code: str | None) -> None:
        for word, score in scores.items():
            for column, value in zip(records, (code, kind, word, score, wrong_code), strict=True):
                records[column].append(value)

    candidates = [[t] if p == t else [t, p] for t, p in zip(true_codes, predicted_codes, strict=True)]
    for start in range(0, len(texts), TEXTS_PER_CALL):
        chunk = slice(start, start + TEXTS_PER_CALL)
        for true_code, text_codes, explanations in zip(true_codes[chunk], candidates[chunk],
                                                       explain_texts(classifier, texts[chunk], candidates[chunk]), strict=True):
            toward = _word_scores(explanations[0].words)
            record(true_code, TOWARD, toward, None)
            if len(text_codes) == 2:  # misclassified: the contrast wrong minus true
                away = _word_scores(explanations[1].words)
                record(true_code, PULLS_AWAY, {word: away[word] - toward[word] for word in toward}, text_codes[1])
        if progress is not None:
            progress(min(start + TEXTS_PER_CALL, len(texts)), len(texts))

    outcomes = pl.DataFrame({"code": true_codes, "wrong": [p != t for p, t in zip(predicted_codes, true_codes, strict=True)]},
                            schema={"code": pl.String, "wrong": pl.Boolean})
    class_rows = pl.concat([
        outcomes.group_by("code").agg(class_rows=pl.len()).with_columns(kind=pl.lit(TOWARD)),
        outcomes.filter("wrong").group_by("code").agg(class_rows=pl.len()).with_columns(kind=pl.lit(PULLS_AWAY)),
    ]).with_columns(pl.col("class_rows").cast(pl.Int64))
    pushes = pl.col("score") > 0
    return (pl.DataFrame(records, schema={"code": pl.String, "kind": pl.String, "word": pl.String,
                                          "score": pl.Float64, "wrong_code": pl.String})
            .group_by("code", "kind", "word")
            .agg(total=pl.col("score").sum(), rows=pushes.sum().cast(pl.Int64),
                 wrong_code=pl.col("wrong_code").filter(pushes).mode().sort().first())
            .join(class_rows, on=["code", "kind"])
            .with_columns(mean_score=pl.col("total") / pl.col("class_rows"))
            .select("code", "kind", "word", "mean_score", "rows", "class_rows", "wrong_code")
            .sort("code", "kind", "word"))


def top_class_words(words: pl.DataFrame, per_class: int = 10) -> pl.DataFrame:
    """The `per_class` best words of each class and kind, ranked as the module docstring says."""
    toward = words.filter((pl.col("kind") == TOWARD) & (pl.col("mean_score") > 0)).sort(
        ["code", "mean_score", "word"], descending=[False, True, False])
    away = words.filter((pl.col("kind") == PULLS_AWAY) & (pl.col("rows") > 0) & (pl.col("mean_score") > 0)
                        & ~pl.col("word").is_in(list(FUNCTION_WORDS))).sort(
        ["code", "rows", "mean_score", "word"], descending=[False, True, True, False])
    return (pl.concat([toward, away])
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("code", "kind").cast(pl.Int64))
            .filter(pl.col("rank") <= per_class)
            .select("code", "kind", "rank", "word", "mean_score", "rows", "class_rows", "wrong_code")
            .sort("code", "kind", "rank"))


def cache_path(classifier: Classifier, test: pl.DataFrame, cache_dir: Path) -> Path:
    """Where `class_words` keeps the table of (model, test data): a page shows it at once when this file exists."""
    return cache_dir / "class_words" / f"{classifier.fingerprint}-{fingerprint(test)}.parquet"


def class_words(classifier: Classifier, test: pl.DataFrame, cache_dir: Path, per_class: int = 10,
                progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """Columns code, kind ('toward' | 'pulls_away'), rank, word, mean_score, rows, class_rows, wrong_code.

    Computed once per (model, test data) and cached under `cache_dir`; `progress(done, total)` is called only
    when the rows are explained, not on a cache hit.
    """
    path = cache_path(classifier, test, cache_dir)
    if path.is_file():
        return top_class_words(pl.read_parquet(path), per_class)
    words = all_class_words(classifier, test, progress)
    keep_in_cache(path, words.write_parquet)
    return top_class_words(words, per_class)
