"""Logging configuration shared by the agent's programs (done at run time, never on import)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "arc_agent"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 4
LOG_FILE_MODE = 0o640


class RotatingFile(logging.FileHandler):
    """A log file renamed to ``.1`` (``.1`` to ``.2``, ...) once it reaches ``max_bytes``.

    ``logging.handlers.RotatingFileHandler`` does the same, but importing ``logging.handlers``
    costs the agent service megabytes of memory (pickle, queue, socket helpers). The log
    directory is shared by root and himds (sticky: each keeps its own files), so the file is
    opened and renamed relative to a descriptor of the directory and never through a link:
    a link someone left under the log's name is removed, not followed (``fsutil.Directory``).
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        from arc_agent.fsutil import Directory  # here: a service that logs to stderr need not load it

        self.directory = Directory(path.parent)
        self.max_bytes = max_bytes
        self.backups = backups
        super().__init__(path, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        fd = self.directory.open_append(os.path.basename(self.baseFilename), LOG_FILE_MODE)
        return open(fd, "a", encoding="utf-8", closefd=True)

    def close(self) -> None:
        super().close()
        self.directory.close()

    def handleError(self, record: logging.LogRecord) -> None:
        """A log that cannot be written (full disk) must not put a traceback into a command's
        output: the record is dropped; the command's own result still says what happened."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is not None and self.stream.tell() >= self.max_bytes:
                self._rotate()
        except (OSError, ValueError):
            self.handleError(record)
        super().emit(record)

    def _rotate(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = None  # reopened by emit()
        base = os.path.basename(self.baseFilename)
        names = set(self.directory.names())
        for index in range(self.backups - 1, 0, -1):
            if f"{base}.{index}" in names:
                self.directory.replace(f"{base}.{index}", f"{base}.{index + 1}")
        self.directory.replace(base, f"{base}.1")


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
            rotating = RotatingFile(log_file, LOG_FILE_BYTES, LOG_FILE_BACKUPS)
        except OSError as exc:
            logger.warning("cannot write the log file %s: %s", log_file, exc.strerror)
        else:
            rotating.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(rotating)
    return logger
