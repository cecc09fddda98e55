"""Logging configuration shared by the agent's programs (done at run time, never on import)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "arc_agent"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 4


def configure_logging(
    *, verbose: bool, stream: TextIO | None, log_file: Path | None = None
) -> logging.Logger:
    """Send the ``arc_agent`` log records to ``stream`` (or nowhere when it is ``None``), and to
    ``log_file`` when given and writable (rotated at 5 MiB, four old files kept)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: logging.Handler
    if stream is None:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            rotating = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            logger.warning("cannot write the log file %s: %s", log_file, exc.strerror)
        else:
            rotating.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(rotating)
    return logger
