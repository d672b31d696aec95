"""Build the embedded model and its calibration: the recipe of MODEL_CARD.md as one command.

    uv run python scripts/build_embedded_model.py --out nace_app/resources/embedded_model

1. The model: the demo data's train and validation splits plus each class's heading train it; early stopping
   watches the `select` part of the shifted text (`nace_app/resources/shifted_text.csv`, written apart from the
   training writers). The test split is never used.
2. Its calibration, on text unlike what it learned from: leave one writer group out. The demo data has three
   writer groups (the first wave; the second wave's catalogue writers, index and definition rows; its people's-
   words writers, query, owner and informal rows). For each group a model of the same recipe is trained on the
   other two and scores the group's rows: logits of text from writers the model never read. The temperature and
   the conformal scores are fitted on those, then written to `calibration.json` beside the model.
3. Figures: `benchmarks/heldout_accuracy.py` reports the result on the shifted `report` part and the test split.

`--no-calibration` skips step 2 (minutes of training per group).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.data.tables import Splits, load_labelled, prepare_labelled, read_table, split
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.calibration import fit_calibration, shifted_text
from nace_app.review.conformal import true_indices
from nace_app.sources.resolve import embedded_data_dir
from nace_app.training.core import TrainingSettings, train_model

RECIPE = TrainingSettings(rows_per_class=None, epochs=10, batch_size=256, learning_rate=0.02, embedding_dim=64, buckets=50_000,
                          token_dropout=0.2, label_smoothing=0.0, weight_decay=0.0, include_headings=True,
                          patience=2, half_precision=True)
FIRST_WAVE, CATALOGUE, PEOPLE = "first writers", "second writers: catalogue", "second writers: people's words"
CATALOGUE_REGISTERS = ("index", "definition")


def writer_groups(folder: Path) -> list[str]:
    """The writer group of each row of `load_labelled(folder)`, in its order (files are read in the same order)."""
    groups: list[str] = []
    for path in sorted(folder.glob("*.csv")):
        registers = read_table(path)["register"].to_list()
        if "-2" not in path.stem:
            groups += [FIRST_WAVE] * len(registers)
        else:
            groups += [CATALOGUE if register in CATALOGUE_REGISTERS else PEOPLE for register in registers]
    return groups


def train(splits: Splits, stopping: pl.DataFrame, workdir: Path) -> Path:
    result = train_model(splits, RECIPE, workdir, extra_rows=splits.validation, stopping_frame=stopping,
                         model_dir=workdir / "model")
    print(f"  trained in {result.duration:.0f} s, {len(result.history)} epochs, test top-1 "
          f"{result.test.top1_accuracy:.3f}", file=sys.stderr)
    return result.model_dir


def out_of_group_logits(splits: Splits, groups: pl.DataFrame, stopping: pl.DataFrame, labels: list[str],
                        workdir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Logits (in `labels` order) and true indices of every train and validation row, each scored by a model that
    never read its writer group; and the group of each row. `groups` maps (code, label) to the writer group."""
    splits = Splits(*(part.join(groups, on=["code", "label"], how="left", maintain_order="left")
                      for part in (splits.train, splits.validation, splits.test)), splits.data_fingerprint)
    rows = pl.concat([splits.train, splits.validation])
    logits, truth, groups = [], [], []
    for group in (FIRST_WAVE, CATALOGUE, PEOPLE):
        held_out = rows.filter(pl.col("group") == group)
        fold = Splits(splits.train.filter(pl.col("group") != group), splits.validation.filter(pl.col("group") != group),
                      splits.test, splits.data_fingerprint)
        print(f"leaving out {group} ({held_out.height:,} rows)", file=sys.stderr)
        classifier = Classifier(load_model(train(fold, stopping, workdir / group.replace(" ", "_").replace(":", ""))))
        scored = classifier.logits(held_out["label"].to_list())
        column = {code: i for i, code in enumerate(classifier.labels)}
        aligned = np.full((held_out.height, len(labels)), -1e9, dtype=np.float64)  # a class the fold never saw
        for j, code in enumerate(labels):
            if code in column:
                aligned[:, j] = scored[:, column[code]]
        logits.append(aligned)
        truth.append(true_indices(labels, held_out["code"].to_list()))
        groups += [group] * held_out.height
    return np.concatenate(logits), np.concatenate(truth), groups


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the fold models here (default: a temporary folder)")
    parser.add_argument("--trained", type=Path, help="a model this recipe already trained (step 1), to calibrate")
    args = parser.parse_args(argv)
    started = time.monotonic()
    frame = load_labelled(embedded_data_dir())
    groups = frame.select("code", "label").with_columns(group=pl.Series(writer_groups(embedded_data_dir())))
    splits = split(frame)  # the app's own split of the same rows: the model records its fingerprint
    stopping = prepare_labelled(shifted_text("select"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nace-embedded-"))
    if args.trained:
        model_dir = workdir / "final"
        shutil.copytree(args.trained, model_dir, dirs_exist_ok=True)
    else:
        print(f"the model ({splits.train.height + splits.validation.height:,} rows)", file=sys.stderr)
        model_dir = train(splits, stopping, workdir / "final")
    labels = json.loads((model_dir / "labels.json").read_text())
    if not args.no_calibration:
        logits, truth, row_groups = out_of_group_logits(splits, groups, stopping, labels, workdir)
        calibration = fit_calibration(logits, truth, f"{len(row_groups):,} demo descriptions, each scored by a model "
                                      "that never read its writer group (leave one writer group out)")
        calibration.save(model_dir)
        np.savez_compressed(workdir / "out_of_group.npz", logits=logits, truth=truth, groups=np.array(row_groups))
        accuracy = float(np.mean(logits.argmax(axis=1) == truth))
        print(f"out-of-group top-1 {accuracy:.3f}; temperature {calibration.temperature:.3f}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("*"):
        if stale.name != "MODEL_CARD.md" and stale.is_file():
            stale.unlink()
    for path in model_dir.iterdir():
        shutil.copy2(path, args.out / path.name)
    print(f"written to {args.out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
