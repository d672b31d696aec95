"""`nace-app`: info, predict, evaluate, train. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from nace_app.config import redact_uri
from nace_app.errors import NaceAppError
from nace_app.logs import configure_logging

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"nace-app: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _settings(args: argparse.Namespace):
    from nace_app.config import load_settings

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
    from nace_app.opening import open_workspace

    settings = _settings(args)
    workspace = open_workspace(settings)
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


def _read_texts(args: argparse.Namespace) -> list[str]:
    from nace_app.data import read_table, texts_column

    texts = list(args.text or [])
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise NaceAppError(f"input file {path} does not exist")
        frame = read_table(path)
        column = "text" if path.suffix.lower() == ".txt" else args.text_column
        texts += texts_column(frame, column)
    if not texts or not any(t.strip() for t in texts):
        raise NaceAppError("no text to code: give TEXT arguments or --input")
    return texts


def _write_rows(rows: list[dict[str, Any]], top: Any, output: Path) -> None:
    suffix = output.suffix.lower()
    if suffix == ".jsonl":
        output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".csv":
        top.frame().write_csv(output)
    else:
        top.frame().write_parquet(output)


def cmd_predict(args: argparse.Namespace) -> int:
    from nace_app.opening import open_model

    texts = _read_texts(args)
    if args.output and Path(args.output).suffix.lower() not in (".jsonl", ".csv", ".parquet"):
        raise NaceAppError(f"unsupported output type {Path(args.output).suffix!r}: use .jsonl, .csv or .parquet")
    opened = open_model(None, _settings(args))
    _say_fallbacks([opened.source.fallback_reason] if opened.source.fallback_reason else [])
    classifier = opened.classifier
    classifier.check_top_k(args.top_k)
    top = classifier.predict_top_k(texts, top_k=args.top_k)
    rows = top.rows()
    if classifier.tokenizer.output_dim is not None:  # a fixed window: say where reading stopped
        from nace_app.tokenization import read_until

        for row in rows:
            stop = read_until(classifier.tokenizer, row["text"])
            if stop is not None:
                row["read_until"] = stop
    if args.explain:
        from nace_app.explain import integrated_gradients

        for row in rows:
            explanations = integrated_gradients(classifier, row["text"], [p["code"] for p in row["predictions"]])
            for item, explanation in zip(row["predictions"], explanations, strict=True):
                item.update(explanation.to_dict())
    if args.output:
        _write_rows(rows, top, Path(args.output))
    elif args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        for row in rows:
            print(row["text"])
            if "read_until" in row:
                print(f"  (the model read only: {row['text'][:row['read_until']]!r})")
            for c in row["predictions"]:
                print(f"  {c['code']:<6} {c['probability']:7.2%}  {c['heading']}")
    return 0


# --- evaluate -------------------------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nace_app.evaluation import evaluate_classifier
    from nace_app.opening import open_workspace

    workspace = open_workspace(_settings(args))
    data = workspace.data
    _say_fallbacks(workspace.fallbacks())
    evaluation = evaluate_classifier(workspace.classifier, data.splits.test)
    if args.json:
        _emit({"model": workspace.model_source.shown_uri, "data": data.source.shown_uri, "split": "test", **evaluation.to_dict()})
        return 0
    print(f"model {workspace.model_source.shown_uri}  data {data.source.shown_uri}  test rows {evaluation.n}")
    print(f"top-1 {evaluation.top1_accuracy:.4f}  top-5 {evaluation.top5_accuracy:.4f}  "
          f"macro-F1 {evaluation.macro_f1:.4f}  ECE {evaluation.ece:.4f}")
    for level, value in evaluation.accuracy_by_level.items():
        print(f"  {level:<9} {value:.4f}")
    return 0


# --- train ----------------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nace_app.opening import open_data
    from nace_app.runs import run_logged_training
    from nace_app.training import TrainingSettings

    settings = _settings(args)
    data = open_data(settings)
    _say_fallbacks([data.source.fallback_reason] if data.source.fallback_reason else [])
    training = TrainingSettings(**{name: getattr(args, name) for name in TRAINING_FLAGS})
    workdir = settings.cache_dir / "runs" / time.strftime("cli-%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else workdir / "model"

    extra_rows = data.splits.validation if args.train_on_validation else None
    stopping_frame = None
    if args.stop_on:
        from nace_app.data import load_labelled

        stopping_frame = load_labelled(Path(args.stop_on))
    elif args.train_on_validation:
        raise NaceAppError("--train-on-validation needs --stop-on: early stopping cannot watch rows it trains on")

    def show(event) -> None:
        if event.kind == "epoch" and not args.json:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
            print(f"epoch {event.epoch}: {shown}", file=sys.stderr)

    result, run = run_logged_training(data, training, settings, workdir, progress=show,
                                      run_name="nace-app train", model_dir=out, extra_rows=extra_rows,
                                      stopping_frame=stopping_frame)
    summary = {**result.to_dict(), "data": data.source.shown_uri, "mlflow_run_id": run.run_id,
               "mlflow_tracking_uri": redact_uri(run.uri), "mlflow_failure": run.failure}
    if args.json:
        _emit(summary)
    else:
        print(f"model saved to {result.model_dir}")
        for name, evaluation in (("validation", result.validation), ("test", result.test)):
            print(f"{name:<10} top-1 {evaluation.top1_accuracy:.4f}  top-5 {evaluation.top5_accuracy:.4f}  "
                  f"macro-F1 {evaluation.macro_f1:.4f}  ECE {evaluation.ece:.4f}  (n={evaluation.n})")
        print(f"mlflow run {run.run_id} in {redact_uri(run.uri)}" if run.failure is None else run.failure)
    return 0


TRAINING_FLAGS = {  # TrainingSettings field: (flag, help); types and defaults come from the dataclass
    "sample_size": ("--sample", "stratified sample of N train rows (default: all of them)"),
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
    "batch_size": ("--batch-size", None),
    "patience": ("--patience", "epochs without progress before early stopping"),
    "label_smoothing": ("--label-smoothing", None),
    "weight_decay": ("--weight-decay", None),
    "include_headings": ("--include-headings", "add each class's official NACE heading as an extra training row"),
    "half_precision": ("--half-precision", "store float16 weights (half the size)"),
}
CLI_DEFAULTS = {"sample_size": None}  # the command line trains on the whole train split unless told otherwise


def _add_training_settings(parser: argparse.ArgumentParser) -> None:
    from dataclasses import MISSING, fields

    from nace_app.tokenization import TOKENIZER_KINDS
    from nace_app.training import TrainingSettings

    for field in fields(TrainingSettings):
        flag, help_text = TRAINING_FLAGS[field.name]
        default = CLI_DEFAULTS.get(field.name, field.default if field.default is not MISSING else None)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action="store_true", help=help_text)
        elif field.name == "tokenizer":
            parser.add_argument(flag, dest=field.name, choices=TOKENIZER_KINDS, default=default, help=help_text)
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
        verb.set_defaults(run=run)

    predict = verbs.add_parser("predict", help="top-k codes for texts")
    predict.add_argument("text", nargs="*")
    predict.add_argument("--input", help=".txt (one text per line), .csv or .parquet")
    predict.add_argument("--text-column", default="label")
    predict.add_argument("--output", help=".jsonl, .csv or .parquet")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--explain", action="store_true", help="add integrated-gradients word attributions")
    predict.add_argument("--model")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(run=cmd_predict)

    train = verbs.add_parser("train", help="train a model on the train split")
    train.add_argument("--data")
    _add_training_settings(train)
    train.add_argument("--out", help="folder for the model (default: a run folder in the cache)")
    train.add_argument("--train-on-validation", action="store_true",
                       help="add the validation split to the training rows (needs --stop-on); the test split stays untouched")
    train.add_argument("--stop-on", help="labelled file or folder of CSVs to stop early on, instead of the validation split")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.run(args)
    except NaceAppError as exc:
        print(f"nace-app: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
