"""`nace-app`: info, predict, evaluate, explain-classes, train, relabel. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nace_app.settings.config import redact_uri
from nace_app.settings.errors import NaceAppError, first_line
from nace_app.settings.logs import configure_logging

EXIT_USAGE = 2
DEFAULT_REVIEW_BELOW = 0.8  # as nace_app.coding.relabel, without importing polars for --help
EXPLAIN_ROWS = 64  # rows explained between two progress reports
STREAM_ROWS = 5_000  # rows coded at a time: about 80 MB of probabilities and logits
UNKNOWN_NOTE = "unknown to the model (other alphabets, emoji, symbols or rare words)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"nace-app: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _settings(args: argparse.Namespace):
    from nace_app.settings.config import load_settings

    for flag in ("model", "data"):
        if getattr(args, flag, None) == "":
            raise NaceAppError(f"--{flag} is empty: give a URI, a local path or 'embedded'")
    settings = load_settings()
    if settings.cache_notice:
        print(f"nace-app: {settings.cache_notice}", file=sys.stderr)
    return settings.with_overrides(model_uri=getattr(args, "model", None), data_uri=getattr(args, "data", None))


def _say_fallbacks(reasons: list[str]) -> None:
    for reason in reasons:
        print(f"nace-app: {reason}; using the embedded demo instead", file=sys.stderr)


def _emit(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# --- info -----------------------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from nace_app.model.opening import open_workspace

    settings = _settings(args)
    workspace = open_workspace(settings, calibrate=_calibrate(settings))
    data = workspace.data
    _say_fallbacks(workspace.fallbacks())
    info = {
        "settings": settings.to_dict(),
        "model": {"source": workspace.model_source.to_dict(), **workspace.classifier.describe()},
        "data": {"source": data.source.to_dict(), "rows": data.frame.height, "codes": data.frame["code"].n_unique()},
        "fallbacks": workspace.fallbacks(),
        "codes_missing_from_train": data.splits.codes_missing_from_train(),
        "cache_dir": str(settings.cache_dir),
    }
    if args.json:
        _emit(info)
        return 0
    model = info["model"]
    print(f"model      {workspace.model_source.shown_uri}  ({model['format']}, {model['num_classes']} classes, "
          f"labels from {model['labels_from']})")
    print(f"data       {data.source.shown_uri}  ({data.frame.height} rows, {info['data']['codes']} codes)")
    print(f"config     {json.dumps(model['model_config'], default=str)}")
    print(f"tokenizer  vocab {model['vocab_size']}, output_dim {model['output_dim']}")
    print(f"cache dir  {settings.cache_dir}")
    if info["codes_missing_from_train"]:
        print(f"warning    {len(info['codes_missing_from_train'])} codes are in validation/test but not in the train "
              f"split: {', '.join(info['codes_missing_from_train'][:10])}")
    for reason in workspace.fallbacks():
        print(f"fallback   {reason}")
    return 0


# --- predict --------------------------------------------------------------------------------------------------------


CONTROL_CATEGORIES = {"Cc", "Zl", "Zp"}  # control characters, and line and paragraph separators
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def visible(text: str) -> str:
    """Control characters escaped (\\x1b, \\r, \\u202e): input text must not drive the terminal or split a line."""
    import unicodedata

    return "".join(char.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(char) in CONTROL_CATEGORIES or char in BIDI_CONTROLS else char
                   for char in text)


@dataclass(frozen=True)
class _Inputs:
    """The TEXT arguments, then the --input file's rows: `chunks()` in order, `total` rows in all."""

    texts: list[str]
    source: Any  # a data.TextSource, or None

    @property
    def total(self) -> int:
        return len(self.texts) + (self.source.total if self.source is not None else 0)

    def chunks(self, rows: int) -> Iterator[tuple[list[str], Any]]:
        """(texts, their input rows with every column: a polars frame, or None for TEXT arguments alone)."""
        for start in range(0, len(self.texts), rows):
            texts = self.texts[start:start + rows]
            yield texts, self.source.rows_of(texts) if self.source is not None else None
        if self.source is not None:
            for frame in self.source.frames(rows):
                yield self.source.texts(frame), frame


def _refuse_output_onto_input(input_path: str | None, output_path: str | None) -> None:
    """Writing the coded table over the file being read would destroy it: same path, link or inode."""
    if input_path is None or output_path is None or not Path(output_path).exists():
        return
    try:
        same = Path(input_path).resolve() == Path(output_path).resolve() or Path(output_path).samefile(input_path)
    except OSError:  # the input is missing: its own check says so
        return
    if same:
        raise NaceAppError(f"--output {output_path} is the input file: give another name (the input would be replaced)")


@dataclass
class _LongTexts:
    """Texts above the page's `MAX_CHARS` are cut to it, as the page does, and counted for one warning at the end."""

    limit: int
    cut: int = 0
    seen: int = 0

    def cut_down(self, texts: list[str]) -> list[str]:
        self.seen += len(texts)
        long = sum(len(text) > self.limit for text in texts)
        self.cut += long
        return [text[:self.limit] for text in texts] if long else texts

    def close(self) -> None:
        if self.cut:
            print(f"nace-app: warning: {self.cut:,} of {self.seen:,} texts had more than {self.limit:,} characters: "
                  f"only their first {self.limit:,} were coded", file=sys.stderr)


@contextmanager
def _open_inputs(args: argparse.Namespace) -> Iterator[_Inputs]:
    from nace_app.data.tables import open_texts

    texts = list(args.text or [])
    if not args.input:
        if not any(t.strip() for t in texts):
            raise NaceAppError("no text to code: give TEXT arguments or --input")
        yield _Inputs(texts, None)
        return
    path = Path(args.input)
    with open_texts(path, "text" if path.suffix.lower() == ".txt" else args.text_column) as source:
        yield _Inputs(texts, source)


@dataclass
class _Report:
    """What stderr says as chunks pass: 'coded 40,000 of 200,000 rows' (when `verb` is set), and the mostly
    unknown texts, one warning per TEXT argument, or for a file one count at the end (`close`)."""

    total: int
    verb: str | None
    from_file: bool
    done: int = 0
    unknown: int = 0

    def follow(self, chunks: Iterable[Any]) -> Iterator[Any]:
        for chunk in chunks:
            self.done += len(chunk.texts)
            if self.verb:
                print(f"{self.verb} {self.done:,} of {self.total:,} rows", file=sys.stderr, flush=True)
            self.unknown += int(chunk.mostly_unknown.sum())
            if not self.from_file:
                for text in np.asarray(chunk.top.texts, dtype=object)[chunk.mostly_unknown]:
                    print(f"nace-app: warning: most of {text[:80]!r} is {UNKNOWN_NOTE}: its codes are little more than "
                          "a guess", file=sys.stderr)
            yield chunk

    def close(self) -> None:
        if self.from_file and self.unknown:
            print(f"nace-app: warning: {self.unknown:,} of {self.total:,} texts are mostly {UNKNOWN_NOTE}: their codes "
                  "are little more than a guess", file=sys.stderr)


class _SplitScores:
    """A split's probabilities, computed at most once per command (the test split also serves the evaluation)."""

    def __init__(self, classifier: Any, splits: Any) -> None:
        self.classifier, self.splits, self.scores = classifier, splits, {}

    def __call__(self, split: str) -> Any:
        if split not in self.scores:
            self.scores[split] = self.classifier.predict_proba(getattr(self.splits, split)["label"].to_list())
        return self.scores[split]


def _calibrate(settings: Any) -> Any:
    """For `open_model`: a model without calibration.json is calibrated on the shifted text, once per cache folder."""
    from nace_app.review.calibration import runtime_calibration

    return runtime_calibration(settings.cache_dir)


def _calibrator(classifier: Any, coverage: float) -> Any:
    """The sets' calibrator, from the model's calibration (the shifted text's calibrate part), as the app's."""
    from nace_app.review.calibration import calibration_of

    return calibration_of(classifier).calibrator(coverage)


def _print_rows(rows: list[dict[str, Any]], coverage: float | None) -> None:
    for row in rows:
        print(visible(row["text"]))
        if not row["predictions"]:
            print("  (not coded: empty)")
        if "read_until" in row:
            print(f"  (the model read only: {row['text'][:row['read_until']]!r})")
        for c in row["predictions"]:
            print(f"  {c['code']:<6} {c['probability']:7.2%}  {c['heading']}")
            if "rev2_codes" in c:
                print(f"         Rev 2: {', '.join(c['rev2_codes']) or c.get('rev2_note', '')}")
        if row["predictions"] and "prediction_set" in row:
            print(f"  with {coverage:.0%} coverage: {', '.join(row['prediction_set'])}")
        if "follow_up" in row:
            print(f"  to narrow it, ask: {row['follow_up']['question']}")
            for answer in row["follow_up"]["answers"]:
                print(f"    - {answer['answer']}: {', '.join(answer['codes'])}")


def cmd_predict(args: argparse.Namespace) -> int:
    from nace_app.coding.batch import OUTPUT_TYPES, code_chunk, write_coded
    from nace_app.coding.predicting import MAX_CHARS
    from nace_app.model.opening import open_model

    if args.engine == "spark":
        return _predict_on_spark(args)
    output = Path(args.output) if args.output else None
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise NaceAppError(f"--chunk-rows must be at least 1, got {args.chunk_rows}")
    if output is not None and output.suffix.lower() not in OUTPUT_TYPES:
        raise NaceAppError(f"unsupported output type {output.suffix!r}: use .jsonl, .csv or .parquet")
    _refuse_output_onto_input(args.input, args.output)
    long_texts = _LongTexts(MAX_CHARS)
    with _open_inputs(args) as inputs:
        settings = _settings(args)
        opened = open_model(None, settings, calibrate=_calibrate(settings))
        _say_fallbacks([opened.source.fallback_reason] if opened.source.fallback_reason else [])
        classifier = opened.classifier
        classifier.check_top_k(args.top_k)
        calibrator = None if args.coverage is None else _calibrator(classifier, args.coverage)
        rows_per_chunk = args.chunk_rows or (EXPLAIN_ROWS if args.explain else STREAM_ROWS)
        shows_progress = inputs.source is not None or args.explain
        report = _Report(inputs.total, ("coded and explained" if args.explain else "coded") if shows_progress else None,
                         from_file=inputs.source is not None)
        chunks = report.follow(code_chunk(classifier, long_texts.cut_down(texts), args.top_k, calibrator, args.explain,
                                          rev2=args.rev2, inputs=frame)
                               for texts, frame in inputs.chunks(rows_per_chunk))
        if output is not None:
            try:
                write_coded(chunks, output)
            except OSError as exc:  # strerror alone: the message would name the temporary file
                raise NaceAppError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from exc
        else:
            for chunk in chunks:
                if args.json:
                    for row in chunk.rows():
                        print(json.dumps(row, ensure_ascii=False))
                else:
                    _print_rows(chunk.rows(), args.coverage)
        report.close()
        long_texts.close()
    return 0


# --- relabel --------------------------------------------------------------------------------------------------------


def cmd_relabel(args: argparse.Namespace) -> int:
    from nace_app.coding.relabel import OUTPUT_TYPES, relabel_file
    from nace_app.data.tables import open_table
    from nace_app.model.opening import open_model

    output = Path(args.output)
    if output.suffix.lower() not in OUTPUT_TYPES:
        raise NaceAppError(f"unsupported output type {output.suffix!r}: use .parquet or .csv")
    if args.chunk_rows < 1:
        raise NaceAppError(f"--chunk-rows must be at least 1, got {args.chunk_rows}")
    if not 0 <= args.review_below <= 1:
        raise NaceAppError(f"--review-below must be between 0 and 1, got {args.review_below}")
    with open_table(Path(args.input), (args.text_column, args.code_column)) as source:
        settings = _settings(args)
        opened = open_model(None, settings, calibrate=_calibrate(settings))
        _say_fallbacks([opened.source.fallback_reason] if opened.source.fallback_reason else [])

        def progress(done: int) -> None:
            print(f"relabelled {done:,} of {source.total:,} rows", file=sys.stderr, flush=True)

        try:
            counts = relabel_file(opened.classifier, source, output, args.code_column, args.text_column,
                                  args.review_below, args.chunk_rows, progress)
        except OSError as exc:
            raise NaceAppError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from exc
    for line in counts.summary():
        print(f"nace-app: {visible(line)}", file=sys.stderr)
    return 0


SPARK_INPUT_TYPES = (".parquet", ".csv")
SPARK_UNSUPPORTED = {"text": "TEXT arguments", "explain": "--explain", "json": "--json"}
SPARK_POLL_SECONDS = 2.0


def _predict_on_spark(args: argparse.Namespace) -> int:
    """`predict --engine spark`: a parquet (file or folder) or CSV register in, a folder of parquet parts out.

    Everything a user can get wrong (flags, paths, the model, top-k, coverage) fails before the session starts.
    """
    for flag, shown in SPARK_UNSUPPORTED.items():
        if getattr(args, flag):
            raise NaceAppError(f"{shown} cannot be used with --engine spark: give --input and --output")
    if not args.input or not args.output:
        raise NaceAppError("--engine spark needs --input (a .parquet file or folder, or a .csv) and --output (.parquet)")
    if Path(args.input.rstrip("/")).suffix.lower() not in SPARK_INPUT_TYPES:
        raise NaceAppError(f"unsupported input type for --engine spark: {args.input} (use .parquet or .csv)")
    if Path(args.output.rstrip("/")).suffix.lower() != ".parquet":
        raise NaceAppError(f"--engine spark writes a folder of parquet parts: name it *.parquet, got {args.output}")
    if "://" not in args.input and not Path(args.input).exists():
        raise NaceAppError(f"input {args.input} does not exist")
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise NaceAppError(f"--chunk-rows must be at least 1, got {args.chunk_rows}")
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise NaceAppError("--engine spark needs pyspark: uv sync --extra spark (and a Java runtime)") from exc
    from pyspark.errors import AnalysisException

    from nace_app.coding.spark import prepare_coding

    coding = prepare_coding(args.model, top_k=args.top_k, coverage=args.coverage, settings=_settings(args))
    source, output = (path if "://" in path else str(Path(path).resolve()) for path in (args.input, args.output))
    with _spark_session(args.spark_master, args.chunk_rows) as spark:  # its JVM has its own working folder
        try:
            register = (spark.read.parquet(source) if source.rstrip("/").lower().endswith(".parquet")
                        else spark.read.csv(source, header=True))
        except AnalysisException as exc:  # a remote path that is not there, a folder without parquet files
            raise NaceAppError(f"cannot read {args.input}: {first_line(exc)}") from exc
        coded = coding.apply(register, args.text_column)
        with _spark_progress(spark):
            coded.write.mode("overwrite").parquet(output)
    print(f"coded {args.input} into {args.output} (a folder of parquet parts)", file=sys.stderr)
    return 0


@contextmanager
def _spark_session(master: str | None, batch_rows: int | None) -> Iterator[Any]:
    """This command's session, stopped at the end; a session already active in this process is used and left on.

    Without --spark-master: SPARK_REMOTE (Spark Connect) when set, else local[*]. Local workers run this Python.
    """
    import os

    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if batch_rows:
            active.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
        yield active
        return
    builder = SparkSession.builder.appName("nace-app predict").config("spark.ui.showConsoleProgress", "false")
    if master or not os.environ.get("SPARK_REMOTE"):
        builder = builder.master(master or "local[*]")
        if (master or "local").startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
            builder = builder.config("spark.pyspark.python", sys.executable)
    if batch_rows:
        builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    spark = builder.getOrCreate()
    if not _is_connect(spark):  # classic: Spark's own warnings would drown the one-line messages
        spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


def _is_connect(spark: Any) -> bool:
    """A Spark Connect session: no SparkContext, no status tracker."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


@contextmanager
def _spark_progress(spark: Any) -> Iterator[None]:
    """'spark: 3 of 8 tasks done' on stderr as Spark's status tracker moves (classic sessions; Connect has none)."""
    import threading

    if _is_connect(spark):
        yield
        return
    tracker, done, said = spark.sparkContext.statusTracker(), threading.Event(), [""]

    def follow() -> None:
        while not done.wait(SPARK_POLL_SECONDS):
            stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
            stages = [s for s in stages if s is not None]
            line = "; ".join(f"spark: {s.numCompletedTasks} of {s.numTasks} tasks done" for s in stages)
            if line and line != said[0]:
                print(line, file=sys.stderr, flush=True)
                said[0] = line

    thread = threading.Thread(target=follow, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --- evaluate -------------------------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nace_app.model.opening import open_workspace
    from nace_app.review.evaluation import evaluate

    settings = _settings(args)
    workspace = open_workspace(settings, calibrate=_calibrate(settings))
    data = workspace.data
    _say_fallbacks(workspace.fallbacks())
    split_scores = _SplitScores(workspace.classifier, data.splits)
    evaluation = evaluate(data.splits.test["code"].to_list(), split_scores("test"), workspace.classifier.labels,
                          workspace.classifier.nomenclature)
    report = note = None
    if args.coverage is not None:
        from nace_app.review.calibration import GUARANTEE_COVERS, calibration_of
        from nace_app.review.conformal import held_out_report

        classifier = workspace.classifier
        report = held_out_report(_calibrator(classifier, args.coverage), split_scores("test"),
                                 data.splits.test["code"].to_list(), classifier.labels, classifier.nomenclature.section_of)
        note = (f"Calibrated on {calibration_of(classifier).fitted_on}: the guarantee is {GUARANTEE_COVERS}; "
                f"measured here on the {data.splits.test.height:,} rows of the test split.")
    if args.json:
        conformal = {"conformal": {**report.to_dict(), "note": note,
                                   "by_section": report.by_group.to_dicts()}} if report is not None else {}
        _emit({"model": workspace.model_source.shown_uri, "data": data.source.shown_uri, "split": "test",
               **evaluation.to_dict(), **conformal})
        return 0
    print(f"model {workspace.model_source.shown_uri}  data {data.source.shown_uri}  test rows {evaluation.n}")
    print(f"top-1 {evaluation.top1_accuracy:.4f}  top-5 {evaluation.top5_accuracy:.4f}  "
          f"macro-F1 {evaluation.macro_f1:.4f}  ECE {evaluation.ece:.4f}")
    for level, value in evaluation.accuracy_by_level.items():
        print(f"  {level:<9} {value:.4f}")
    if report is not None:
        print(f"prediction sets at {report.level:.0%} ({report.method}): coverage {report.coverage:.4f}, mean size "
              f"{report.mean_set_size:.2f}, median {report.median_set_size:g}, one-code sets {report.singleton_share:.1%} "
              f"(n={report.rows})")
        print(f"  {note}")
        for group in report.by_group.iter_rows(named=True):
            print(f"  section {group['group']:<2} coverage {group['coverage']:.4f}  mean size {group['mean_set_size']:6.2f}"
                  f"  (n={group['rows']})")
    return 0


# --- explain-classes ------------------------------------------------------------------------------------------------


def cmd_explain_classes(args: argparse.Namespace) -> int:
    from nace_app.explain.class_words import class_words
    from nace_app.model.opening import open_workspace
    from nace_app.settings.cachefiles import write_atomically

    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise NaceAppError(f"unsupported output type {output.suffix!r}: use .parquet or .csv")
    if args.per_class < 1:
        raise NaceAppError(f"--per-class must be at least 1, got {args.per_class}")
    settings = _settings(args)
    workspace = open_workspace(settings, calibrate=_calibrate(settings))
    test = workspace.data.splits.test
    _say_fallbacks(workspace.fallbacks())

    def progress(done: int, total: int) -> None:
        print(f"explained {done:,} of {total:,} test rows", file=sys.stderr, flush=True)

    words = class_words(workspace.classifier, test, settings.cache_dir, args.per_class, progress=progress)
    try:
        write_atomically(output, words.write_parquet if output.suffix.lower() == ".parquet" else words.write_csv)
    except OSError as exc:
        raise NaceAppError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from exc
    print(f"{words.height:,} words of {words['code'].n_unique():,} classes written to {output}", file=sys.stderr)
    return 0


# --- train ----------------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nace_app.model.opening import open_data
    from nace_app.training.core import TrainingSettings
    from nace_app.training.runs import run_logged_training

    training = TrainingSettings(**{name: getattr(args, name) for name in TRAINING_FLAGS})
    settings = _settings(args)
    workdir = settings.cache_dir / "runs" / time.strftime("cli-%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else workdir / "model"
    _check_writable(workdir, "the run's files")
    _check_writable(out, "the model")
    data = open_data(settings)
    _say_fallbacks([data.source.fallback_reason] if data.source.fallback_reason else [])

    extra_rows = data.splits.validation if args.train_on_validation else None
    stopping_frame = None
    if args.stop_on:
        from nace_app.data.tables import load_labelled

        stopping_frame = load_labelled(Path(args.stop_on))
    elif args.train_on_validation:
        raise NaceAppError("--train-on-validation needs --stop-on: early stopping cannot watch rows it trains on")

    def show(event) -> None:
        if event.kind == "epoch" and not args.json:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
            print(f"epoch {event.epoch}: {shown}", file=sys.stderr)

    # MLflow when asked, or when an operator's server is configured: the local store's import and set-up cost as
    # much CPU as the run itself, for runs nobody may look at
    tracked = args.mlflow if args.mlflow is not None else bool(settings.mlflow_tracking_uri)
    try:
        result, run = run_logged_training(data, training, settings, workdir, progress=show,
                                          run_name="nace-app train", model_dir=out, extra_rows=extra_rows,
                                          stopping_frame=stopping_frame, in_child=True, tracked=tracked)
    except OSError as exc:  # the disk filled up during the run: checked writable before it started
        raise NaceAppError(f"training stopped: cannot write its files ({exc.strerror or first_line(exc)})") from exc
    if run is not None and run.failure is not None and run.run_id is not None:  # exiting would end the retries
        from nace_app.training.tracking import FINAL_STATUS_SECONDS

        print(f"nace-app: waiting up to {FINAL_STATUS_SECONDS:.0f} s for MLflow to record the end of run {run.run_id}",
              file=sys.stderr)
        run.close(FINAL_STATUS_SECONDS)
    failure = run.final_report() if run is not None and run.failure is not None else None
    summary = {**result.to_dict(), "data": data.source.shown_uri, "mlflow_run_id": run and run.run_id,
               "mlflow_tracking_uri": run and redact_uri(run.uri), "mlflow_failure": failure}
    if args.json:
        _emit(summary)
    else:
        print(f"model saved to {result.model_dir}")
        for name, evaluation in (("validation", result.validation), ("test", result.test)):
            print(f"{name:<10} top-1 {evaluation.top1_accuracy:.4f}  top-5 {evaluation.top5_accuracy:.4f}  "
                  f"macro-F1 {evaluation.macro_f1:.4f}  ECE {evaluation.ece:.4f}  (n={evaluation.n})")
        if run is None:
            print("not logged to MLflow (--mlflow logs to a store in the cache folder, or to MLFLOW_TRACKING_URI's)")
        else:
            print(f"mlflow run {run.run_id} in {redact_uri(run.uri)}" if failure is None else failure)
    return 0


def _check_writable(folder: Path, what: str) -> None:
    """Create `folder` and write a probe into it, so that a full disk or a bad --out fails before training, not after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".nace-write-check"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise NaceAppError(f"cannot write {what} to {folder}: {exc.strerror or first_line(exc)}") from exc


TRAINING_FLAGS = {  # TrainingSettings field: (flag, help); types and defaults come from the dataclass
    "sample_size": ("--sample", "stratified sample of N train rows (default: all of them)"),
    "rows_per_class": ("--rows-per-class", "keep at most N rows of each class (default: 30, the workshop's run)"),
    "epochs": ("--epochs", None),
    "seed": ("--seed", None),
    "embedding_dim": ("--embedding-dim", None),
    "tokenizer": ("--tokenizer", "wordpiece sub-words, or fastText-style character n-grams plus words"),
    "vocab_size": ("--vocab-size", "WordPiece vocabulary size"),
    "ngram_min": ("--ngram-min", "shortest character n-gram"),
    "ngram_max": ("--ngram-max", "longest character n-gram"),
    "buckets": ("--buckets", "hash buckets for character n-grams"),
    "min_count": ("--min-count", "n-gram tokenizer: keep words seen this often"),
    "token_dropout": ("--token-dropout", "share of tokens hidden at random in training"),
    "output_dim": ("--output-dim", "token window (default: whole texts without attention, derived with it)"),
    "attention": ("--attention", "self-attention over the tokens (reads a fixed window)"),
    "attention_layers": ("--attention-layers", None),
    "attention_heads": ("--attention-heads", None),
    "learning_rate": ("--learning-rate", None),
    "schedule": ("--schedule", "the learning rate: constant, or decaying linearly to 0"),
    "batch_size": ("--batch-size", None),
    "patience": ("--patience", "epochs without progress before early stopping"),
    "label_smoothing": ("--label-smoothing", None),
    "weight_decay": ("--weight-decay", None),
    "include_headings": ("--include-headings", "add each class's official NACE heading as an extra training row"),
    "half_precision": ("--half-precision", "store float16 weights (half the size)"),
}


def _add_training_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainingSettings` field, defaulting to the dataclass's: the Train page's defaults too."""
    from dataclasses import MISSING, fields

    from nace_app.model.tokenization import TOKENIZER_KINDS
    from nace_app.training.core import SCHEDULES, TrainingSettings

    choices = {"tokenizer": TOKENIZER_KINDS, "schedule": SCHEDULES}
    for field in fields(TrainingSettings):
        flag, help_text = TRAINING_FLAGS[field.name]
        default = field.default if field.default is not MISSING else None
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action="store_true", help=help_text)
        elif field.name in choices:
            parser.add_argument(flag, dest=field.name, choices=choices[field.name], default=default, help=help_text)
        else:
            kind = float if isinstance(field.default, float) else int
            parser.add_argument(flag, dest=field.name, type=kind, default=default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nace-app", description="Code activity descriptions into NACE Rev 2.1.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    for name, run, help_text in (("info", cmd_info, "resolved sources, fallbacks, model configuration"),
                                 ("evaluate", cmd_evaluate, "figures on the test split")):
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument("--model")
        verb.add_argument("--data")
        verb.add_argument("--json", action="store_true")
        if name == "evaluate":
            verb.add_argument("--coverage", type=float, help="also measure prediction sets at this level (0.80 to 0.99)")
        verb.set_defaults(run=run)

    words = verbs.add_parser("explain-classes", help="per-class words that carry each class, or pull its rows away")
    words.add_argument("--output", required=True, help=".parquet or .csv")
    words.add_argument("--per-class", type=int, default=10, help="words per class and kind")
    words.add_argument("--model")
    words.add_argument("--data")
    words.set_defaults(run=cmd_explain_classes)

    predict = verbs.add_parser("predict", help="top-k codes for texts")
    predict.add_argument("text", nargs="*")
    predict.add_argument("--input", help=".txt (one text per line), .csv or .parquet")
    predict.add_argument("--text-column", default="label")
    predict.add_argument("--output", help=".jsonl, .csv or .parquet")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--explain", action="store_true", help="add integrated-gradients word attributions")
    predict.add_argument("--coverage", type=float, help="add the prediction set holding the true code with this "
                         "probability (0.80 to 0.99), calibrated on the validation split")
    predict.add_argument("--chunk-rows", type=int, help="rows read, coded and written at a time (default: "
                         f"{STREAM_ROWS:,}, {EXPLAIN_ROWS} with --explain); memory grows with it")
    predict.add_argument("--rev2", action="store_true", help="add each code's NACE Rev 2 classes (the correspondence table)")
    predict.add_argument("--model")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--engine", choices=("local", "spark"), default="local",
                         help="spark: code a register on Apache Spark (needs the spark extra and Java); output is a "
                         "folder of parquet parts")
    predict.add_argument("--spark-master", help="Spark master URL (default: SPARK_REMOTE when set, else local[*])")
    predict.set_defaults(run=cmd_predict)

    relabel = verbs.add_parser("relabel", help="relabel a file coded in NACE Rev 2 into Rev 2.1 (table, then the model)")
    relabel.add_argument("--input", required=True, help=".csv or .parquet, every column kept")
    relabel.add_argument("--code-column", required=True, help="the Rev 2 code (01.13, 0113)")
    relabel.add_argument("--text-column", required=True, help="the description the model reads where the table links "
                         "several Rev 2.1 classes")
    relabel.add_argument("--output", required=True, help=".parquet or .csv")
    relabel.add_argument("--review-below", type=float, default=DEFAULT_REVIEW_BELOW,
                         help="flag model choices whose renormalised probability is below this for review")
    relabel.add_argument("--chunk-rows", type=int, default=STREAM_ROWS, help="rows read, relabelled and written at a time")
    relabel.add_argument("--model")
    relabel.set_defaults(run=cmd_relabel)

    train = verbs.add_parser("train", help="train a model on the train split")
    train.add_argument("--data")
    _add_training_settings(train)
    train.add_argument("--out", help="folder for the model (default: a run folder in the cache)")
    train.add_argument("--train-on-validation", action="store_true",
                       help="add the validation split to the training rows (needs --stop-on); the test split stays untouched")
    train.add_argument("--stop-on", help="labelled file or folder of CSVs to stop early on, instead of the validation split")
    train.add_argument("--mlflow", action=argparse.BooleanOptionalAction,
                       help="log the run to MLflow: MLFLOW_TRACKING_URI's server, or else a SQLite store in the cache "
                            "folder (default: only when MLFLOW_TRACKING_URI is set)")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.run(args)
    except NaceAppError as exc:
        print(f"nace-app: error: {visible(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
