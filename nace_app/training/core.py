"""The training core, free of Streamlit: used by `nace-app train` and the training page.

The tokenizer is trained on the train split only; early stopping watches the validation split. Progress goes to
a callback as `ProgressEvent`s and a stop flag ends the run cleanly, keeping the best epoch so far.
`TrainingSettings()` are the workshop defaults, shared by the Train page and `nace-app train`.

The default model (n-grams, no attention) is trained as our own torch copy of the library's module
(`model.mean_pool`), so a run imports torch but not torchTextClassifiers (Lightning and its stack: seconds and a
gigabyte). WordPiece and attention models are the library's. The library's `save()` folder is written only when
asked (`library_format`), since writing it needs the library.
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
from nace_app.model.numpy_forward import TokenCounts
from nace_app.model.tokenization import (
    NGRAM,
    TOKENIZER_KINDS,
    NGramIds,
    encode,
    ngram_tokenizer_config,
    ngram_tokenizer_from_config,
    train_ngram_ids,
)
from nace_app.review.calibration import fit_on_shifted_text
from nace_app.review.evaluation import Evaluation, evaluate_classifier, evaluate_counted
from nace_app.settings.errors import NaceAppError

logger = logging.getLogger(__name__)

CONSTANT, LINEAR = "constant", "linear"
SCHEDULES = (CONSTANT, LINEAR)


@dataclass
class TrainingSettings:
    """Everything that defines a run.

    `output_dim=None`: a model without attention reads whole texts (mean pooling does not depend on the padded
    length); with attention, the window is derived from the sample's token lengths. `vocab_size` is WordPiece's;
    n-grams use `ngram_min`..`ngram_max` characters hashed into `buckets`, plus the words seen `min_count` times.
    `token_dropout` hides that share of each text's tokens at random during training (never at inference).
    `rows_per_class` keeps at most that many rows of each class (after `sample_size`, a stratified sample);
    `schedule` is the learning rate's: constant, or decaying linearly to 0 over the planned steps (fastText's).
    The defaults are the workshop's run, chosen by measurement (benchmarks/bench_training.py): 30 rows of each
    class (stratified, about 19,500 of the demo's train split), 5 epochs of batches of 1,024 (fewer, larger steps:
    the same accuracy for less overhead), the learning rate 0.06 decaying linearly, character 3- to 5-grams (6-grams
    cost 1.8 CPU-s more, an eighth of the run, for 0.3 points of test top-1).
    """

    sample_size: int | None = None
    rows_per_class: int | None = 30
    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float = 0.06
    schedule: str = LINEAR
    embedding_dim: int = 64
    tokenizer: str = NGRAM
    vocab_size: int = 4000
    ngram_min: int = 3
    ngram_max: int = 5
    buckets: int = 50_000
    min_count: int = 1
    token_dropout: float = 0.2
    output_dim: int | None = None
    attention: bool = False
    attention_layers: int = 1
    attention_heads: int = 4
    patience: int = 3
    seed: int = 42
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    include_headings: bool = False
    half_precision: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.tokenizer not in TOKENIZER_KINDS:
            problems.append(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)}")
        if self.sample_size is not None and self.sample_size < 2:
            problems.append("the sample must have at least 2 rows")
        if self.rows_per_class is not None and self.rows_per_class < 1:
            problems.append("rows per class must be at least 1")
        if self.schedule not in SCHEDULES:
            problems.append(f"the schedule must be one of {', '.join(SCHEDULES)}")
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


@dataclass(frozen=True)
class Timing:
    """Where a run's wall time went (seconds): a child process's start-up (0 in-process); sampling, tokenizing and
    building the model; the training loop; measuring both splits and saving. The run trained on `rows` rows;
    `rows_seen` went through the loop (all epochs together). `cpu` is the CPU-seconds of the run itself (all its
    threads), `startup_cpu` those of a child's start-up (its interpreter, imports and the data it was sent)."""

    rows: int
    prepare: float
    train: float
    finish: float
    rows_seen: int
    cpu: float = 0.0
    startup: float = 0.0
    startup_cpu: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingResult:
    model_dir: Path
    library_dir: Path | None
    settings: TrainingSettings
    labels: list[str]
    history: list[dict[str, float]]
    validation: Evaluation
    test: Evaluation
    duration: float
    stopped_by_user: bool
    output_dim: int
    timing: Timing

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
            "timing": self.timing.to_dict(),
        }


def derive_output_dim(lengths: list[int]) -> int:
    """Cover 99% of texts, rounded up to a multiple of 8 (at least 16)."""
    if not lengths:
        return 16
    return max(16, int(math.ceil(np.percentile(lengths, 99) / 8) * 8))


def select_training_rows(train: pl.DataFrame, settings: TrainingSettings) -> pl.DataFrame:
    """The stratified sample of `sample_size` rows, then at most `rows_per_class` of each class (seeded)."""
    rows = train if settings.sample_size is None else stratified_sample(train, settings.sample_size, settings.seed)
    if settings.rows_per_class is None:
        return rows
    rank = pl.int_range(pl.len()).shuffle(seed=settings.seed).over("code")
    return rows.filter(rank < settings.rows_per_class)


@dataclass
class ModelUnderTraining:
    """What a probe reads: the torch module being trained (ours or the library's) and its tokenizer."""

    module: Any
    tokenizer: Any


def probe_top3(model: ModelUnderTraining, labels: list[str], texts: list[str]) -> list[list[tuple[str, float]]]:
    """Top-3 codes of a model under training (not a shared one), for the probe panel."""
    import torch

    from nace_app.model.forward import pad

    if not texts:
        return []
    encoded = encode(model.tokenizer, texts)
    ids, mask = pad(encoded.ids, encoded.full_width, encoded.pad_id)
    with torch.no_grad():
        logits = model.module(ids, mask, None)
    probabilities = torch.softmax(logits.double(), dim=1)
    values, indices = torch.topk(probabilities, k=min(3, len(labels)), dim=1)
    return [[(labels[i], float(v)) for i, v in zip(row_i.tolist(), row_v.tolist(), strict=True)]
            for row_i, row_v in zip(indices, values, strict=True)]


def _train_tokenizer(settings: TrainingSettings, texts: list[str]):
    if settings.tokenizer == NGRAM:
        return train_ngram_ids(texts, settings.ngram_min, settings.ngram_max, settings.buckets, settings.min_count)
    from torchTextClassifiers.tokenizers import WordPieceTokenizer

    tokenizer = WordPieceTokenizer(vocab_size=settings.vocab_size)
    tokenizer.train(texts)
    return tokenizer



@dataclass
class _Tokens:
    """Texts tokenized once per run, right-padded to one width, with their class indices."""

    ids: Any  # torch.Tensor (rows, width)
    lengths: Any  # torch.Tensor (rows,)
    targets: Any  # torch.Tensor (rows,)

    @classmethod
    def of(cls, tokenizer: Any, texts: list[str], targets: list[int], width: int | None) -> _Tokens:
        import torch

        from nace_app.model.forward import pad

        encoded = encode(tokenizer, texts)
        width = width or max((len(ids) for ids in encoded.ids), default=1)
        ids, mask = pad(encoded.ids, width, encoded.pad_id)
        return cls(ids, mask.sum(dim=1), torch.tensor(targets, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.targets)

    def shuffled_batches(self, size: int, generator: Any, by_length: bool, pool: int = 32) -> list[Any]:
        """Row indices of each batch of an epoch, in random order. `by_length`: each pool of `pool` batches is
        sorted by text length before it is cut into batches, so a batch pads little (fastText-like texts vary
        from a few to hundreds of n-grams)."""
        import torch

        order = torch.randperm(len(self), generator=generator)
        if by_length:
            order = torch.cat([chunk[torch.argsort(self.lengths[chunk], stable=True)]
                               for chunk in order.split(size * pool)])
        batches = list(order.split(size))
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def batch(self, rows: Any, cut: bool) -> tuple[Any, Any, Any]:
        """Ids, mask and targets of `rows`; `cut` drops the padding columns no text of the batch reaches."""
        import torch

        width = int(self.lengths[rows].max()) if cut else self.ids.shape[1]
        ids = self.ids[rows, :width]
        mask = (torch.arange(width)[None, :] < self.lengths[rows, None]).long()
        return ids, mask, self.targets[rows]

    def measure(self, model: Any, loss_fn: Any, cut: bool, chunk: int = 2048) -> dict[str, float]:
        """Mean loss and top-1 accuracy of `model` on these rows, in chunks of padded ids."""
        import torch

        if len(self) == 0:
            return {}
        was_training = model.training
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self), chunk):
                rows = torch.arange(start, min(start + chunk, len(self)))
                ids, mask, targets = self.batch(rows, cut)
                logits = _logits(model, ids, mask)
                loss_sum += float(loss_fn(logits, targets)) * len(rows)
                correct += int((logits.argmax(dim=1) == targets).sum())
        model.train(was_training)
        return {"val_loss": loss_sum / len(self), "val_accuracy": correct / len(self)}


@dataclass
class _Counted:
    """Rows a mean-pooling model reads, tokenized once per run with their class indices: read after every epoch
    by the model under training, and at the end, as counts (`TokenCounts`), by the saved model's numpy forward,
    which gives its validation figures without tokenizing again."""

    counts: TokenCounts
    targets: Any  # torch.Tensor (rows,)
    ids: Any  # torch.Tensor: every text's ids, end to end
    offsets: Any  # torch.Tensor (rows,): where each text starts in `ids`

    @classmethod
    def of(cls, tokenizer: Any, texts: list[str], targets: list[int]) -> _Counted:
        import torch

        encoded = encode(tokenizer, texts)
        counts = TokenCounts.of(encoded.ids, encoded.full_width, tokenizer.vocab_size)
        return cls(counts, torch.tensor(targets, dtype=torch.long),  # copies of the CSR's arrays, taken before any
                   torch.from_numpy(counts.matrix.indices.astype(np.int64)),  # product: a repeated id is still there
                   torch.from_numpy(counts.matrix.indptr[:-1].astype(np.int64)))

    def __len__(self) -> int:
        return len(self.targets)

    def measure(self, model: Any, loss_fn: Any, cut: bool) -> dict[str, float]:
        """Mean loss and top-1 accuracy of `model`'s current weights on these rows (`cut` is `_Tokens.measure`'s:
        these texts carry no padding to cut)."""
        import torch

        if len(self) == 0:
            return {}
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model.forward_texts(self.ids, self.offsets)
        model.train(was_training)
        return {"val_loss": float(loss_fn(logits, self.targets)),
                "val_accuracy": float((logits.argmax(dim=1) == self.targets).double().mean())}


def _hide_tokens(mask: Any, share: float, generator: Any) -> Any:
    """Hide `share` of each text's real tokens at random (never all of them): token dropout."""
    import torch

    keep = (torch.rand(mask.shape, generator=generator) >= share).to(mask.dtype) * mask
    return torch.where(keep.sum(dim=1, keepdim=True) == 0, mask, keep)


def _logits(model: Any, ids: Any, mask: Any) -> Any:
    """Our mean-pooling model reads the real ids end to end (no padding: most of a batch's work); others padded."""
    from nace_app.model.mean_pool import MeanPoolModel, flat_batch

    if isinstance(model, MeanPoolModel):
        return model.forward_flat(*flat_batch(ids, mask))
    return model(ids, mask, None)


def _is_own_mean_pool(settings: TrainingSettings) -> bool:
    """The default architecture (n-grams, mean pooling), which we train as our own copy of the library's module."""
    return settings.tokenizer == NGRAM and not settings.attention


def _build_model(settings: TrainingSettings, tokenizer: Any, num_classes: int,
                 output_dim: int | None) -> tuple[Any, dict[str, Any]]:
    """The torch module to train and its `model_config`: ours for the default architecture (n-grams, mean pooling),
    the library's otherwise."""
    if _is_own_mean_pool(settings):
        from nace_app.model.mean_pool import MeanPoolModel, model_config

        return (MeanPoolModel(tokenizer.vocab_size, settings.embedding_dim, num_classes, tokenizer.padding_idx),
                model_config(settings.embedding_dim, num_classes))
    from torchTextClassifiers import ModelConfig, torchTextClassifiers
    from torchTextClassifiers.model.components import AttentionConfig

    attention = None
    if settings.attention:
        attention = AttentionConfig(n_layers=settings.attention_layers, n_head=settings.attention_heads,
                                    n_kv_head=settings.attention_heads, sequence_len=output_dim)
    if isinstance(tokenizer, NGramIds):
        tokenizer = ngram_tokenizer_from_config(ngram_tokenizer_config(tokenizer), output_dim)
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=ModelConfig(
        embedding_dim=settings.embedding_dim, num_classes=num_classes, attention_config=attention))
    return ttc.pytorch_model, ttc.model_config.to_dict()


def _save_library_format(ttc: Any, settings: TrainingSettings, folder: Path) -> None:
    """The library's own `save()` folder (pickles), logged to MLflow next to our format."""
    import torch
    from torchTextClassifiers.model import TextClassificationModule

    ttc.lightning_module = TextClassificationModule(
        model=ttc.pytorch_model, loss=torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing),
        optimizer=torch.optim.AdamW, optimizer_params={"lr": settings.learning_rate,
                                                       "weight_decay": settings.weight_decay},
        scheduler=None, scheduler_params={})
    ttc.save(folder)


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
    library_format: bool = False,
) -> TrainingResult:
    """Train on (a stratified sample of) the train split; save our format to `model_dir` (default `workdir/model`).

    `extra_rows` (code, label) are added to the training rows as they are (reviewers' corrections, or the
    validation split when an independent `stopping_frame` replaces it for early stopping). `library_format`
    also writes the library's own `save()` folder under `workdir`. The loop is ours: every text is tokenized once
    per run, each batch is cut to its longest text (without attention, mean pooling ignores padding), the
    validation split is measured once per epoch, and the best epoch's weights are kept in memory. The figures
    are those of the saved model, read back as users will read it. No process-wide setting of torch is changed.
    """
    import torch

    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import load_model, save_own
    from nace_app.training.adam import rowwise_adam

    started, cpu_started = time.monotonic(), time.process_time()
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    train = select_training_rows(splits.train, settings)
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
    index = {code: i for i, code in enumerate(labels)}
    output_dim = settings.output_dim
    train_tokens = _Tokens.of(tokenizer, train_texts, [index[c] for c in train_codes], None)
    if output_dim is None and settings.attention:  # attention sees padding: a fixed window
        output_dim = derive_output_dim(train_tokens.lengths.tolist())
    tokenizer.output_dim = output_dim
    if output_dim is not None:  # the window the model will read at inference
        train_tokens = _Tokens.of(tokenizer, train_texts, [index[c] for c in train_codes], output_dim)
    validation_targets = [index[c] for c in validation["code"].to_list()]
    validation_rows = (_Counted.of(tokenizer, validation["label"].to_list(), validation_targets)
                       if _is_own_mean_pool(settings) else
                       _Tokens.of(tokenizer, validation["label"].to_list(), validation_targets, output_dim))
    cut = not settings.attention

    model, model_config = _build_model(settings, tokenizer, len(labels), output_dim)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    optimizer = rowwise_adam(model, settings.weight_decay)
    batches_per_epoch = math.ceil(len(train_tokens) / settings.batch_size)
    total_steps = batches_per_epoch * settings.epochs
    decay = (lambda step: max(0.0, 1.0 - step / total_steps)) if settings.schedule == LINEAR else (lambda _: 1.0)

    def emit(kind: str, epoch: int, step: int, metrics: dict[str, float] | None = None, payload: Any = None) -> None:
        if progress is not None:
            progress(ProgressEvent(kind, epoch, step, total_steps, time.monotonic() - started, metrics or {}, payload))

    emit("start", 0, 0, {"train_rows": len(train_texts), "output_dim": output_dim or 0})
    prepared = time.monotonic()
    history: list[dict[str, float]] = []
    stopped_by_user = False
    best_loss, best_state, epochs_without_progress, step, rows_seen = math.inf, None, 0, 0, 0
    for epoch in range(1, settings.epochs + 1):
        step_losses: list[float] = []
        for rows in train_tokens.shuffled_batches(settings.batch_size, generator, by_length=cut):
            ids, mask, targets = train_tokens.batch(rows, cut)
            if settings.token_dropout > 0:
                mask = _hide_tokens(mask, settings.token_dropout, generator)
            loss = loss_fn(_logits(model, ids, mask), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(settings.learning_rate * decay(step))
            step += 1
            step_losses.append(loss.item())
            rows_seen += len(rows)
            emit("step", epoch, step, {"train_loss_step": step_losses[-1]})
            stopped_by_user = bool(should_stop and should_stop())
            if stopped_by_user:
                break
        metrics = {**validation_rows.measure(model, loss_fn, cut), "train_loss_epoch": float(np.mean(step_losses))}
        history.append({"epoch": epoch, **metrics})
        monitored = metrics.get("val_loss", metrics["train_loss_epoch"])
        if monitored < best_loss:
            best_loss, epochs_without_progress = monitored, 0
            best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        else:
            epochs_without_progress += 1
        payload = None
        if probe is not None:
            model.eval()
            payload = probe(ModelUnderTraining(model, tokenizer), labels)
            model.train()
        emit("epoch", epoch, step, metrics, payload)
        if stopped_by_user or epochs_without_progress >= settings.patience:
            break
    trained = time.monotonic()
    if best_state is not None:
        model.load_state_dict(best_state)
    if getattr(model, "token_embedder", None) is not None:
        model.token_embedder.embedding_layer.sparse = False  # explanations differentiate through it as usual
    model.eval()
    emit("finishing", len(history), step)  # measuring both splits and saving can take a while on a busy server

    record = {"settings": settings.to_dict(), "split": splits.describe(), "train_sample_rows": train.height,
              "extra_rows": extra.height, "output_dim": output_dim, "data_fingerprint": splits.data_fingerprint,
              "early_stopping_on": "validation split" if stopping_frame is None else "an independent set"}
    model_dir = save_own(model, tokenizer, model_config, labels, model_dir or workdir / "model", training=record,
                         half_precision=settings.half_precision)
    saved = load_model(model_dir)
    if isinstance(tokenizer, NGramIds) and isinstance(saved.tokenizer, NGramIds):
        saved.tokenizer.reuse_words_of(tokenizer)  # evaluation then hashes no word a second time
    library_dir = None
    if library_format:
        library_dir = workdir / "library_format"
        _save_library_format(saved.ttc, settings, library_dir)
    classifier = Classifier(saved, name="trained")
    calibration = fit_on_shifted_text(classifier)  # every trained run is calibrated on text its writers did not write
    calibration.save(model_dir)
    classifier.calibrate_with(calibration.to_dict())
    if isinstance(validation_rows, _Counted) and classifier.numpy_forward is not None:
        validation_figures = evaluate_counted(classifier, validation["code"].to_list(), validation_rows.counts)
    else:
        validation_figures = evaluate_classifier(classifier, validation)
    test_figures = evaluate_classifier(classifier, splits.test)
    finished = time.monotonic()
    return TrainingResult(
        model_dir=model_dir,
        library_dir=library_dir,
        settings=settings,
        labels=labels,
        history=history,
        validation=validation_figures,
        test=test_figures,
        duration=finished - started,
        stopped_by_user=stopped_by_user,
        output_dim=output_dim or 0,
        timing=Timing(rows=len(train_tokens), prepare=prepared - started, train=trained - prepared, finish=finished - trained,
                      rows_seen=rows_seen, cpu=time.process_time() - cpu_started),
    )
