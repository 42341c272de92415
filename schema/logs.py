"""The structured log line both sides write: one JSON object per line on stderr.

Callers pass facts as keyword fields; nothing here formats secrets, and callers never pass them.
Every line names the process that wrote it (`pid`): several processes share one stderr under
`payouts worker --processes N` and `payouts ingress --processes N`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["configure_logging", "log", "log_exception", "logged_fields", "redacted_url"]

_FIELDS = "payouts_fields"
# A query parameter of a Postgres URL that holds a secret (libpq's names), up to its value.
_SECRET_PARAMETER = re.compile(r"([?&](?:password|sslpassword)=)[^&#]*")


def _line_encoder() -> Callable[[dict[str, Any]], str]:
    """`json.dumps(line, default=str)`, writing the very same text, with the C encoder built once
    rather than per line (json.dumps builds one per call: a third of its time on the ingress's
    line per request). Where the json module has no C encoder, json.dumps itself. Unlike
    json.dumps it does not look for circular references: a line is flat facts, and one that
    recursed would still fail (RecursionError), and be reported by logging, not written."""
    # Not in the json module's documented API (nor its type stubs), but json.dumps's own.
    make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return lambda line: json.dumps(line, default=str)
    # The arguments json.dumps passes with default=str, bar the circular-reference markers.
    ascii_text = json.encoder.encode_basestring_ascii
    encode = make_encoder(None, str, ascii_text, None, ": ", ", ", False, False, True)
    return lambda line: "".join(encode(line, 0))


class _JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._encode = _line_encoder()
        # The timestamp's date and time to the second, rendered once a second, not once a line.
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            # Asked per line rather than cached: cheap, and right after a fork too.
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        line.update(logged_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self._encode(line)

    def _timestamp(self, created: float) -> str:
        """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`, rounding
        as it does: to the microsecond, half to even, then truncated to the millisecond."""
        second = int(created)
        microsecond = round((created - second) * 1e6)
        if microsecond >= 1_000_000:
            second, microsecond = second + 1, microsecond - 1_000_000
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        return f"{self._second_text}.{microsecond // 1000:03d}+00:00"


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
    """The URL without its secrets, fit for a log line or an error message: every host of a
    multi-host URL (h1:5432,h2:5432) stays, and a password, after the user or as a query
    parameter, becomes ***."""
    password = urlsplit(url).password
    if password is not None:
        url = url.replace(f":{password}@", ":***@", 1)
    return _SECRET_PARAMETER.sub(r"\1***", url)
