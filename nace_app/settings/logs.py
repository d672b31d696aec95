"""Logging, configured once by our entry points (the app, the CLI) and never at import time."""

from __future__ import annotations

import logging
import os
import warnings


def _quiet_libraries(record: logging.LogRecord) -> bool:
    noisy = record.name.startswith(("pytorch_lightning", "lightning", "torchTextClassifiers", "mlflow", "alembic"))
    return not noisy or record.levelno >= logging.ERROR


def configure_logging(verbose: bool = False) -> None:
    """Set up logging before torchTextClassifiers' import-time basicConfig can, and quiet Lightning."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # libraries reset their own loggers' levels on import, so filter at the handler
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_libraries)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
