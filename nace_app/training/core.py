"""The training core over torchTextClassifiers, free of Streamlit: used by `nace-app train` and the training page.

The tokenizer is trained on the train split only; early stopping watches the validation split. Progress goes to
a callback as `ProgressEvent`s and a stop flag ends the run cleanly, keeping the best checkpoint so far.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nace_app.data.tables import Splits, stratified_sample
from nace_app.model.tokenization import NGRAM, TOKENIZER_KINDS, WORDPIECE, encode, train_ngram_tokenizer
from nace_app.review.evaluation import Evaluation, evaluate_classifier
from nace_app.settings.errors import NaceAppError

logger = logging.getLogger(__name__)


@dataclass
class TrainingSettings:
    """Everything that defines a run.

    `output_dim=None`: a model without attention reads whole texts (mean pooling does not depend on the padded
    length); with attention, the window is derived from the sample's token lengths. `vocab_size` is WordPiece's;
    n-grams use `ngram_min`..`ngram_max` characters hashed into `buckets`, plus the words seen `min_count` times.
    `token_dropout` hides that share of each text's tokens at random during training (never at inference).
    """

    sample_size: int | None = 5000
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.004
    embedding_dim: int = 64
    tokenizer: str = WORDPIECE
    vocab_size: int = 4000
    ngram_min: int = 3
    ngram_max: int = 6
    buckets: int = 50_000
    min_count: int = 1
    token_dropout: float = 0.0
    output_dim: int | None = None
    attention: bool = False
    attention_layers: int = 1
    attention_heads: int = 4
    patience: int = 3
    seed: int = 42
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    include_headings: bool = False
    half_precision: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.tokenizer not in TOKENIZER_KINDS:
            problems.append(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)}")
        if self.sample_size is not None and self.sample_size < 2:
            problems.append("the sample must have at least 2 rows")
        for name in ("epochs", "batch_size", "embedding_dim", "vocab_size", "buckets", "min_count", "patience",
                     "attention_layers", "attention_heads"):
            if getattr(self, name) < 1:
                problems.append(f"{name.replace('_', ' ')} must be at least 1")
        if not 2 <= self.ngram_min <= self.ngram_max <= 6:
            problems.append("character n-grams must satisfy 2 <= min <= max <= 6")
        if not 0.0 <= self.token_dropout < 1.0:
            problems.append("token dropout must be in [0, 1)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append("the learning rate must be a positive finite number")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append("label smoothing must be in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append("weight decay must be a finite number of at least 0")
        if self.output_dim is not None and self.output_dim < 2:
            problems.append("output_dim must be at least 2 tokens")
        if self.attention and self.attention_heads >= 1 and self.embedding_dim % self.attention_heads:
            problems.append(f"with attention, the embedding size ({self.embedding_dim}) must be a multiple of the "
                            f"number of heads ({self.attention_heads})")
        elif self.attention and self.attention_heads >= 1 and (self.embedding_dim // self.attention_heads) % 2:
            problems.append("with attention, embedding size / heads must be even (rotary positions)")
        if problems:
            raise NaceAppError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProgressEvent:
    """`kind` is 'start', 'step', 'epoch' or 'finishing' (training over: measuring and saving); metrics hold losses
    and accuracies seen so far."""

    kind: str
    epoch: int
    step: int
    total_steps: int
    elapsed: float
    metrics: dict[str, float] = field(default_factory=dict)
    payload: Any = None


@dataclass
class TrainingResult:
    model_dir: Path
    library_dir: Path
    settings: TrainingSettings
    labels: list[str]
    history: list[dict[str, float]]
    validation: Evaluation
    test: Evaluation
    duration: float
    stopped_by_user: bool
    output_dim: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "settings": self.settings.to_dict(),
            "num_classes": len(self.labels),
            "output_dim": self.output_dim,
            "epochs_run": len(self.history),
            "history": self.history,
            "validation": self.validation.to_dict(),
            "test": self.test.to_dict(),
            "duration_seconds": round(self.duration, 2),
            "stopped_by_user": self.stopped_by_user,
        }


def derive_output_dim(lengths: list[int]) -> int:
    """Cover 99% of texts, rounded up to a multiple of 8 (at least 16)."""
    if not lengths:
        return 16
    return max(16, int(math.ceil(np.percentile(lengths, 99) / 8) * 8))


def estimate_seconds(settings: TrainingSettings, train_rows: int) -> float:
    """A rough duration from measurements on 2 CPU cores, for the page to show before a run."""
    rows = min(settings.sample_size or train_rows, train_rows)
    per_row = (2.0e-4 * (settings.embedding_dim / 64) * (2.5 if settings.attention else 1.0)
               * (3.0 if settings.tokenizer == NGRAM else 1.0))
    return 4.0 + rows * settings.epochs * per_row + rows * 1.5e-4


def _make_progress_callback(progress, should_stop, total_steps: int, started: float, on_epoch_end):
    import pytorch_lightning as pl_

    class Progress(pl_.Callback):
        """Step losses as they come; at each validation, the mean step loss of the epoch that just ended.

        (Lightning's own `train_loss_epoch` is only aggregated after validation, so it would lag an epoch.)
        """

        def __init__(self) -> None:
            self.step = 0
            self.epoch_losses: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.step += 1
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.epoch_losses.append(float(loss))
            if progress is not None:
                progress(ProgressEvent("step", trainer.current_epoch + 1, self.step, total_steps,
                                       time.monotonic() - started, {"train_loss_step": float(loss)}))
            if should_stop is not None and should_stop():
                trainer.should_stop = True

        def on_validation_epoch_end(self, trainer, module) -> None:
            if trainer.sanity_checking:
                return
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val_loss", "val_accuracy")}
            if self.epoch_losses:
                metrics["train_loss_epoch"] = float(np.mean(self.epoch_losses))
            self.epoch_losses = []
            on_epoch_end(trainer.current_epoch + 1, self.step, metrics)

    return Progress()


def _token_dropout_hook(share: float):
    """A forward pre-hook that hides `share` of the real tokens of each training text (never all of them)."""
    import torch

    def hook(module, args, kwargs):
        if not module.training:
            return None
        mask = kwargs["attention_mask"]
        keep = (torch.rand(mask.shape) >= share).to(mask.dtype) * mask
        empty = keep.sum(dim=1, keepdim=True) == 0
        kwargs["attention_mask"] = torch.where(empty, mask, keep)
        return args, kwargs

    return hook


def _train_tokenizer(settings: TrainingSettings, texts: list[str]):
    if settings.tokenizer == NGRAM:
        return train_ngram_tokenizer(texts, settings.ngram_min, settings.ngram_max, settings.buckets,
                                     settings.min_count)
    from torchTextClassifiers.tokenizers import WordPieceTokenizer

    tokenizer = WordPieceTokenizer(vocab_size=settings.vocab_size)
    tokenizer.train(texts)
    return tokenizer


def train_model(
    splits: Splits,
    settings: TrainingSettings,
    workdir: Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    probe: Callable[[Any, list[str]], Any] | None = None,
    model_dir: Path | None = None,
    extra_rows: pl.DataFrame | None = None,
    stopping_frame: pl.DataFrame | None = None,
) -> TrainingResult:
    """Train on (a stratified sample of) the train split; save our format to `model_dir` (default `workdir/model`).

    `extra_rows` (code, label) are added to the training rows as they are (reviewers' corrections, or the
    validation split when an independent `stopping_frame` replaces it for early stopping). `workdir` also
    receives the checkpoints and the library's own `save()` format.
    """
    import pytorch_lightning as pl_
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from torchTextClassifiers import ModelConfig, TrainingConfig, torchTextClassifiers
    from torchTextClassifiers.model.components import AttentionConfig
    from torchTextClassifiers.value_encoder import DictEncoder, ValueEncoder

    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import LoadedModel, save_model

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    pl_.seed_everything(settings.seed, workers=True, verbose=False)
    train = splits.train if settings.sample_size is None else stratified_sample(splits.train, settings.sample_size,
                                                                               settings.seed)
    if train.height < 2:
        raise NaceAppError("the training sample has fewer than 2 rows")
    validation = splits.validation if stopping_frame is None else stopping_frame
    extra = extra_rows.select("code", "label") if extra_rows is not None else train.clear().select("code", "label")
    labels = sorted(set(splits.train["code"].to_list()) | set(splits.validation["code"].to_list())
                    | set(splits.test["code"].to_list()) | set(extra["code"].to_list()))
    train_texts = train["label"].to_list() + extra["label"].to_list()
    train_codes = train["code"].to_list() + extra["code"].to_list()
    if settings.include_headings:  # the nomenclature's own wording of every class, as extra training rows
        from nace_app.nomenclature.structure import load_nomenclature

        nomenclature = load_nomenclature()
        known = [code for code in labels if nomenclature.is_known(code)]
        train_texts += [nomenclature.heading(code) for code in known]
        train_codes += known
    validation = validation.filter(pl.col("code").is_in(labels))

    tokenizer = _train_tokenizer(settings, train_texts)
    output_dim = settings.output_dim
    if output_dim is None and settings.attention:  # attention sees padding: a fixed window
        output_dim = derive_output_dim([len(ids) for ids in encode(tokenizer, train_texts).ids])
    tokenizer.output_dim = output_dim

    attention = None
    if settings.attention:
        attention = AttentionConfig(n_layers=settings.attention_layers, n_head=settings.attention_heads,
                                    n_kv_head=settings.attention_heads, sequence_len=output_dim)
    encoder = ValueEncoder(DictEncoder({code: i for i, code in enumerate(labels)}))
    model_config = ModelConfig(embedding_dim=settings.embedding_dim, num_classes=len(labels),
                               attention_config=attention)
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=model_config, value_encoder=encoder)
    dropout = (ttc.pytorch_model.register_forward_pre_hook(_token_dropout_hook(settings.token_dropout),
                                                            with_kwargs=True)
               if settings.token_dropout > 0 else None)

    batches_per_epoch = math.ceil(len(train_texts) / settings.batch_size)
    total_steps = batches_per_epoch * settings.epochs
    history: list[dict[str, float]] = []
    stop_requested = {"value": False}

    def stop() -> bool:
        stop_requested["value"] = stop_requested["value"] or bool(should_stop and should_stop())
        return stop_requested["value"]

    last_step = {"value": 0}

    def on_epoch_end(epoch: int, step: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        last_step["value"] = step
        payload = None
        if probe is not None:
            was_training = ttc.pytorch_model.training
            ttc.pytorch_model.eval()
            payload = probe(ttc, labels)
            ttc.pytorch_model.train(was_training)
        if progress is not None:
            progress(ProgressEvent("epoch", epoch, step, total_steps, time.monotonic() - started, metrics, payload))

    if progress is not None:
        progress(ProgressEvent("start", 0, 0, total_steps, time.monotonic() - started,
                               {"train_rows": len(train_texts), "output_dim": output_dim or 0}))
    checkpoint = ModelCheckpoint(dirpath=str(workdir / "checkpoints"), monitor="val_loss", mode="min", save_top_k=1)
    callbacks = [checkpoint, EarlyStopping(monitor="val_loss", mode="min", patience=settings.patience),
                 _make_progress_callback(progress, stop, total_steps, started, on_epoch_end)]
    training_config = TrainingConfig(
        num_epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.learning_rate, num_workers=0,
        patience_early_stopping=settings.patience, accelerator="cpu",
        loss=torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing),
        optimizer=torch.optim.AdamW, optimizer_params={"weight_decay": settings.weight_decay}, save_path=str(workdir / "library_format"),
        trainer_params={"callbacks": callbacks, "logger": False, "enable_progress_bar": False,
                        "enable_model_summary": False, "default_root_dir": str(workdir), "deterministic": False},
    )
    try:
        ttc.train(np.asarray(train_texts), np.asarray(train_codes), training_config,
                  X_val=np.asarray(validation["label"].to_list()), y_val=np.asarray(validation["code"].to_list()),
                  verbose=False)
    finally:
        torch.set_float32_matmul_precision("highest")  # the library sets "medium" process-wide
        if dropout is not None:
            dropout.remove()
    ttc.pytorch_model.eval()
    if progress is not None:  # measuring both splits and saving can take a while on a busy server: say so
        progress(ProgressEvent("finishing", len(history), last_step["value"], total_steps, time.monotonic() - started))

    record = {"settings": settings.to_dict(), "split": splits.describe(), "train_sample_rows": train.height,
              "extra_rows": extra.height, "output_dim": output_dim, "data_fingerprint": splits.data_fingerprint,
              "early_stopping_on": "validation split" if stopping_frame is None else "an independent set"}
    model_dir = save_model(ttc, labels, model_dir or workdir / "model", training=record,
                           half_precision=settings.half_precision)
    classifier = Classifier(LoadedModel(ttc, labels, "nace-explorer", "labels.json", record), name="trained")
    return TrainingResult(
        model_dir=model_dir,
        library_dir=workdir / "library_format",
        settings=settings,
        labels=labels,
        history=history,
        validation=evaluate_classifier(classifier, validation),
        test=evaluate_classifier(classifier, splits.test),
        duration=time.monotonic() - started,
        stopped_by_user=stop_requested["value"],
        output_dim=output_dim or 0,
    )
