"""Logging configuration shared by the agent's programs (done at run time, never on import)."""

from __future__ import annotations

import logging
from typing import TextIO

LOGGER_NAME = "arc_agent"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(*, verbose: bool, stream: TextIO | None) -> logging.Logger:
    """Send the ``arc_agent`` log records to ``stream`` (or nowhere when it is ``None``)."""
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
    return logger
