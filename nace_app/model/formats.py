"""Reading and writing models.

Two formats are read:
- ours (written by `save_model`), loaded without unpickling anything:
  `config.json` ({"format": "nace-explorer-model/1", "model_config": ModelConfig.to_dict(),
  "tokenizer": {"kind": "wordpiece"|"ngram", "output_dim": int|null}, "training": {...}}),
  `labels.json` (the class codes, in class-index order), `tokenizer.json` (for WordPiece the Hugging Face
  tokenizer file; for n-grams the library's `save_pretrained` JSON: n-gram range, buckets, word vocabulary)
  and `model.safetensors` (the PyTorch model's state_dict, float32 or float16; loaded as float32), read with
  safetensors' numpy API: a mean-pooling model is then used without torch (`numpy_forward`), explained with our
  torch copy of the library's module (`mean_pool.MeanPoolModel`), and the library's model is only built for
  other architectures (attention);
- the library's `torchTextClassifiers.save()` folder (`metadata.pkl`, `tokenizer.pkl`, `model_checkpoint.ckpt`,
  optional `value_encoder.pkl`), which is unpickled: only ever read it from the configured sources.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nace_app.model.numpy_forward import MeanPoolForward, is_mean_pooling
from nace_app.model.tokenization import (
    NGRAM,
    TOKENIZER_KINDS,
    WORDPIECE,
    NGramIds,
    WordPieceIds,
    kind_of,
    ngram_tokenizer_config,
    ngram_tokenizer_from_config,
    own_tokenizer,
)
from nace_app.settings.errors import NaceAppError, first_line

logger = logging.getLogger(__name__)

FORMAT = "nace-explorer-model/1"
CALIBRATION_FILE = "calibration.json"  # optional: the temperature and conformal scores (review/calibration.py)


@dataclass
class OwnModel:
    """Our format as read from disk, without torch: what builds the library's model when something needs it."""

    model_config: dict[str, Any]
    state: dict[str, np.ndarray]  # the state_dict as stored (float32 or float16: widened where used)
    tokenizer_text: str
    tokenizer: NGramIds | WordPieceIds
    numpy_forward: MeanPoolForward | None  # None when the architecture needs the library's forward


@dataclass
class LoadedModel:
    """A model with its class codes and where they came from.

    `library` is the torchTextClassifiers instance; for our format it is built from `own` on first use of `ttc`
    (importing torch and the library then), so that predicting with a mean-pooling model never builds it.
    """

    library: Any
    labels: list[str]
    model_format: str
    labels_from: str
    training: dict[str, Any] = field(default_factory=dict)
    own: OwnModel | None = None
    calibration: dict[str, Any] | None = None  # calibration.json as read, when the folder has one
    _building: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _mean_pool: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (the warm-up's child gets a copy): without the lock and the built torch parts."""
        if self.own is None:
            raise TypeError("only a model in our own format is sent to another process")
        return {**self.__dict__, "library": None, "_building": None, "_mean_pool": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _building=threading.Lock())

    @property
    def ttc(self) -> Any:
        if self.library is None:
            with self._building:  # sessions share the model: build it once
                if self.library is None:
                    self.library = _library_model(self.own)
        return self.library

    @property
    def torch_model(self) -> Any:
        """The torch module (for explanations, and for predicting with what numpy cannot run). A mean-pooling model
        of ours is our own copy of the library's module: it does not import the library."""
        if self.own is None or self.own.numpy_forward is None:
            return self.ttc.pytorch_model
        if self._mean_pool is None:
            with self._building:
                if self._mean_pool is None:
                    self._mean_pool = _mean_pool_model(self.own)
        return self._mean_pool

    @property
    def tokenizer(self) -> NGramIds | WordPieceIds:
        return self.own.tokenizer if self.own is not None else own_tokenizer(self.library.tokenizer)

    @property
    def model_config(self) -> dict[str, Any] | None:
        if self.own is not None:
            return self.own.model_config
        return self.library.model_config.to_dict() if hasattr(self.library, "model_config") else None

    @property
    def numpy_forward(self) -> MeanPoolForward | None:
        return self.own.numpy_forward if self.own is not None else None


def is_own_format(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def save_model(ttc: Any, labels: list[str], path: Path, training: dict[str, Any] | None = None,
               half_precision: bool = False) -> Path:
    """Write a torchTextClassifiers instance in our non-pickle format (see `save_own`)."""
    return save_own(ttc.pytorch_model, ttc.tokenizer, ttc.model_config.to_dict(), labels, path, training,
                    half_precision)


def save_own(model: Any, tokenizer: Any, model_config: dict[str, Any], labels: list[str], path: Path,
             training: dict[str, Any] | None = None, half_precision: bool = False) -> Path:
    """Write our non-pickle format; `training` records the split and settings for the review page.

    `model` is the library's torch module or ours (the same state dict), `tokenizer` ours or the library's.
    `half_precision` stores float16 weights (half the size); they are read back as float32.
    """
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / CALIBRATION_FILE).unlink(missing_ok=True)  # an earlier model's, in a reused folder: not this one's
    kind = kind_of(tokenizer)
    config = {
        "format": FORMAT,
        "model_config": model_config,
        "tokenizer": {"kind": kind, "output_dim": tokenizer.output_dim},
        "training": training or {},
    }
    (path / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    (path / "labels.json").write_text(json.dumps(list(labels)) + "\n")
    if kind == NGRAM:
        (path / "tokenizer.json").write_text(json.dumps(ngram_tokenizer_config(tokenizer), ensure_ascii=False))
    else:
        (path / "tokenizer.json").write_text(tokenizer.tokenizer.backend_tokenizer.to_str())
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half_precision:
        state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(path / "model.safetensors"))
    return path


def _wordpiece_from_file(text: str, output_dim: int | None) -> Any:
    from tokenizers import Tokenizer
    from torchTextClassifiers.tokenizers import WordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(text)
    tokenizer = WordPieceTokenizer(vocab_size=backend.get_vocab_size(), output_dim=output_dim)
    tokenizer.tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.trained = True
    tokenizer.padding_idx = backend.token_to_id("[PAD]")
    tokenizer.vocab_size = len(tokenizer.tokenizer)
    return tokenizer


def _own_tokenizer(kind: str, text: str, output_dim: int | None) -> NGramIds | WordPieceIds:
    if kind == NGRAM:
        return NGramIds.from_config(json.loads(text), output_dim)
    if kind == WORDPIECE:
        try:
            return WordPieceIds(text, output_dim)
        except Exception as exc:  # the tokenizers library raises a bare Exception for a malformed file
            raise ValueError(first_line(exc)) from exc
    raise NaceAppError(f"unknown tokenizer kind {kind!r} (known: {', '.join(TOKENIZER_KINDS)})")


def _library_model(own: OwnModel) -> Any:
    """The torchTextClassifiers instance of our format (imports torch and the library: seconds, a gigabyte)."""
    import torch
    from torchTextClassifiers import ModelConfig, torchTextClassifiers

    output_dim = own.tokenizer.output_dim
    if isinstance(own.tokenizer, NGramIds):
        tokenizer = ngram_tokenizer_from_config(json.loads(own.tokenizer_text), output_dim)
    else:
        tokenizer = _wordpiece_from_file(own.tokenizer_text, output_dim)
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=ModelConfig.from_dict(own.model_config))
    ttc.pytorch_model.load_state_dict({k: torch.from_numpy(v) for k, v in own.state.items()})  # copies them
    return ttc


def _mean_pool_model(own: OwnModel) -> Any:
    """Our torch module of a mean-pooling model (imports torch, not the library)."""
    import torch

    from nace_app.model.mean_pool import MeanPoolModel

    return MeanPoolModel.from_state({k: torch.from_numpy(v) for k, v in own.state.items()},
                                    own.tokenizer.padding_idx)


def _load_own(path: Path) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        config = json.loads((path / "config.json").read_text())
        labels = json.loads((path / "labels.json").read_text())
        tokenizer_text = (path / "tokenizer.json").read_text()
    except (OSError, ValueError) as exc:
        raise NaceAppError(f"cannot read the model in {path}: {first_line(exc)}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise NaceAppError(f"{path}/config.json is not a {FORMAT} model")
    try:
        kind = config.get("tokenizer", {}).get("kind", WORDPIECE)
        output_dim = config["tokenizer"].get("output_dim")
        if not isinstance(config["model_config"], dict):
            raise TypeError("model_config is not an object")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise NaceAppError(f"{path}/config.json is damaged or incomplete ({type(exc).__name__}: {first_line(exc, 120)})") from exc
    try:
        tokenizer = _own_tokenizer(kind, tokenizer_text, output_dim)
    except NaceAppError as exc:
        raise NaceAppError(f"{path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:  # a damaged tokenizer.json; bugs elsewhere stay loud
        raise NaceAppError(f"cannot read {path}/tokenizer.json: {first_line(exc)}") from exc
    try:
        state = load_file(str(path / "model.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise NaceAppError(f"cannot load the weights in {path}/model.safetensors: {first_line(exc)}") from exc
    own = OwnModel(config["model_config"], state, tokenizer_text, tokenizer, None)
    loaded = LoadedModel(None, [str(c) for c in labels], "nace-explorer", "labels.json", config.get("training", {}), own,
                         _read_calibration(path))
    if is_mean_pooling(own.model_config, state):
        try:
            own.numpy_forward = MeanPoolForward.from_state(state)
        except ValueError as exc:
            raise NaceAppError(f"cannot load the weights in {path}/model.safetensors: {first_line(exc)}") from exc
        _check_shapes(path, own, len(labels))
    else:  # the library's forward: build it now, so that a damaged file is reported at load time
        try:
            num_classes = loaded.ttc.num_classes
        except (RuntimeError, ValueError) as exc:  # weights of another shape than the configuration
            raise NaceAppError(f"cannot load the weights in {path}/model.safetensors: {first_line(exc)}") from exc
        except (AttributeError, KeyError, TypeError) as exc:  # a config.json whose settings cannot build a model
            raise NaceAppError(f"{path}/config.json describes no buildable model ({type(exc).__name__}: "
                               f"{first_line(exc, 120)})") from exc
        if len(labels) != num_classes:
            raise NaceAppError(f"{path}: labels.json has {len(labels)} codes for {num_classes} classes")
    return loaded


def _read_calibration(path: Path) -> dict[str, Any] | None:
    """The folder's calibration.json, or None without one; a damaged one is refused, not ignored."""
    file = path / CALIBRATION_FILE
    if not file.is_file():
        return None
    try:
        calibration = json.loads(file.read_text())
        temperature = float(calibration["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NaceAppError(f"cannot read {file}: {first_line(exc)}") from exc
    if not temperature > 0:
        raise NaceAppError(f"{file}: the temperature must be positive, got {temperature:g}")
    return calibration


def _check_shapes(path: Path, own: OwnModel, label_count: int) -> None:
    """What `load_state_dict` and the library would refuse, checked without them."""
    forward, config = own.numpy_forward, own.model_config
    expected = (own.tokenizer.vocab_size, config.get("embedding_dim"), config.get("num_classes"))
    if not all(isinstance(size, int) for size in expected):
        raise NaceAppError(f"{path}/config.json describes no buildable model (embedding_dim and num_classes are "
                           f"{expected[1]!r} and {expected[2]!r}, not whole numbers)")
    found = (forward.vocab_size, forward.dim, forward.num_classes)
    if expected != found:
        raise NaceAppError(f"cannot load the weights in {path}/model.safetensors: (vocabulary, dimension, classes) "
                           f"are {found}, the configuration says {expected}")
    if label_count != forward.num_classes:
        raise NaceAppError(f"{path}: labels.json has {label_count} codes for {forward.num_classes} classes")


def _labels_from_value_encoder(encoder: Any) -> list[str] | None:
    label_encoder = getattr(encoder, "label_encoder", None)
    if label_encoder is None:
        return None
    if hasattr(label_encoder, "classes_"):
        return [str(c) for c in label_encoder.classes_]
    if hasattr(label_encoder, "inverse_mapping"):
        mapping = label_encoder.inverse_mapping
        return [str(mapping[i]) for i in range(len(mapping))]
    return None


def _damaged_library_files(path: Path) -> list[str]:
    """'tokenizer.pkl: pickle stream does not end (truncated)' for each file of a `save()` folder cut short.

    Checked before unpickling: a cut checkpoint makes torch fail with a bare '[Errno 22] Invalid argument'.
    """
    from nace_app.sources.resolve import load_check_problem

    problems = ((p.name, load_check_problem(p)) for p in sorted(path.iterdir()) if p.suffix in (".pkl", ".ckpt"))
    return [f"{name}: {problem}" for name, problem in problems if problem]


def _load_library(path: Path, dataset_codes: Callable[[], list[str]] | None) -> LoadedModel:
    from torchTextClassifiers import torchTextClassifiers

    missing = [n for n in ("metadata.pkl", "tokenizer.pkl", "model_checkpoint.ckpt") if not (path / n).is_file()]
    if missing:
        raise NaceAppError(f"{path} is not a torchTextClassifiers model folder (missing {', '.join(missing)})")
    damaged = _damaged_library_files(path)
    if damaged:
        raise NaceAppError(f"cannot load the model in {path}: a file is truncated or damaged ({'; '.join(damaged)})")
    try:
        ttc = torchTextClassifiers.load(path, device="cpu")
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, RuntimeError) as exc:
        # what pickle and torch.load raise on a damaged file that passed the checks above (torch: RuntimeError)
        raise NaceAppError(f"cannot load the model in {path}: a file is truncated or damaged ({first_line(exc)})") from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # whole pickles of the wrong content
        raise NaceAppError(f"cannot load the model in {path}: its files do not hold a torchTextClassifiers model "
                           f"({type(exc).__name__}: {first_line(exc, 120)})") from exc
    if not hasattr(ttc, "lightning_module"):
        raise NaceAppError(f"cannot load the model in {path}: the checkpoint was not restored")
    labels = _labels_from_value_encoder(ttc.value_encoder) if ttc.value_encoder is not None else None
    if labels is not None:
        return LoadedModel(ttc, labels, "torchTextClassifiers", "value_encoder.pkl")
    if dataset_codes is None:
        raise NaceAppError(f"{path} has no value_encoder.pkl: a dataset is needed to name its classes")
    codes = sorted(set(dataset_codes()))
    if len(codes) != ttc.num_classes:
        raise NaceAppError(
            f"the model has {ttc.num_classes} classes but the dataset has {len(codes)} distinct codes: "
            "cannot map class indices to codes without value_encoder.pkl"
        )
    logger.info("no value_encoder.pkl: class i is the i-th of the dataset's sorted distinct codes")
    return LoadedModel(ttc, codes, "torchTextClassifiers", "sorted distinct codes of the dataset")


def load_model(path: Path, dataset_codes: Callable[[], list[str]] | None = None) -> LoadedModel:
    """Load either format from a local folder; `dataset_codes()` names classes when the library saved no encoder."""
    if not path.is_dir():
        raise NaceAppError(f"model folder {path} does not exist")
    if is_own_format(path):
        return _load_own(path)
    return _load_library(path, dataset_codes)
