"""The structured log line both sides write: one JSON object per line on stderr.

Callers pass facts as keyword fields; nothing here formats secrets, and callers never pass them.
Every line names the process that wrote it (`pid`): several processes share one stderr under
`payouts worker --processes N` and `payouts ingress --processes N`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["configure_logging", "log", "log_exception", "logged_fields", "redacted_url"]

_FIELDS = "payouts_fields"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            # Asked per line rather than cached: cheap, and right after a fork too.
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        line.update(logged_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One line per request and per payout: skip what our lines never show. Looking up the
    # caller's file and line costs a frame walk per line (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn's access log repeats what our request line says, without the provider context.
    logging.getLogger("uvicorn.access").disabled = True


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={_FIELDS: fields}, stacklevel=2)


def log_exception(logger: logging.Logger, message: str, **fields: Any) -> None:
    """An error line with the exception being handled, as `logger.exception` writes it."""
    logger.exception(message, extra={_FIELDS: fields}, stacklevel=2)


def logged_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a line was logged with (none for a line not written by `log`)."""
    fields: dict[str, Any] = getattr(record, _FIELDS, {})
    return fields


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
