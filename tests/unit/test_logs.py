"""The structured log line: one JSON object, naming the process that wrote it."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from schema.logs import configure_logging, log, log_exception, logged_fields, redacted_url

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)


@pytest.fixture
def handler() -> Iterator[logging.StreamHandler[Any]]:
    """The handler configure_logging() installs, writing to a StringIO; afterwards the root
    logger and the logging module as they were."""
    root = logging.getLogger()
    handlers, level, srcfile = root.handlers[:], root.level, logging._srcfile
    configure_logging("INFO")
    (configured,) = root.handlers
    assert isinstance(configured, logging.StreamHandler)
    configured.setStream(io.StringIO())
    yield configured
    root.handlers[:] = handlers
    root.setLevel(level)
    logging._srcfile = srcfile


def only_line(text: str) -> dict[str, Any]:
    (line,) = text.splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_line_names_the_process_that_wrote_it(handler: logging.StreamHandler[Any]) -> None:
    log(logger, logging.INFO, "worker consuming", queue="work")
    line = only_line(handler.stream.getvalue())
    assert line["pid"] == os.getpid()
    assert line["queue"] == "work"


def test_a_forked_process_names_itself_not_its_parent(
    handler: logging.StreamHandler[Any],
) -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes its line into the pipe and exits at once
        try:
            handler.setStream(os.fdopen(writer, "w"))
            log(logger, logging.INFO, "forked")
            handler.flush()
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        line = only_line(pipe.read())
    os.waitpid(child, 0)
    assert line["pid"] == child


def test_an_exception_line_carries_its_fields_and_traceback(
    handler: logging.StreamHandler[Any],
) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log_exception(logger, "unexpected error while crediting", event_id="e-1")
    line = only_line(handler.stream.getvalue())
    assert (line["level"], line["event_id"]) == ("error", "e-1")
    assert "ValueError: boom" in line["exception"]


def test_the_fields_of_a_line_are_read_back_from_its_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger.name):
        log(logger, logging.INFO, "payout processed", outcome="credited")
        logger.info("a line of a library")
    assert [logged_fields(record) for record in caplog.records] == [{"outcome": "credited"}, {}]


@pytest.mark.parametrize(
    "created",
    [
        0.0,
        1_796_596_825.0,
        1_796_596_825.0004995,  # rounds down to .000
        1_796_596_825.9994999,
        1_796_596_825.9999996,  # rounds up into the next second
        1_796_596_859.999_999_9,  # and into the next minute
    ],
)
def test_the_timestamp_is_the_records_time_to_the_millisecond(
    handler: logging.StreamHandler[Any], created: float
) -> None:
    # Each second is rendered once: a line of the same second after another reuses it.
    for offset in (0.0, 0.0005, *(index / 997 for index in range(997))):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "tick", None, None)
        record.created = created + offset
        line = json.loads(handler.format(record))
        expected = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        assert line["ts"] == expected, record.created


def test_values_of_other_types_are_written_as_their_text(
    handler: logging.StreamHandler[Any],
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    log(logger, logging.INFO, "payout held", amount=Decimal("1.50"), at=when, share=0.25)
    line = only_line(handler.stream.getvalue())
    assert (line["amount"], line["at"], line["share"]) == ("1.50", str(when), 0.25)


@pytest.mark.parametrize("text", ["café", "\ud800"])
def test_a_line_stays_ascii_whatever_its_text(
    handler: logging.StreamHandler[Any], text: str
) -> None:
    log(logger, logging.INFO, "refused", detail=text)
    written = handler.stream.getvalue()
    assert written.isascii()
    assert only_line(written)["detail"] == text


def test_a_line_is_the_text_json_dumps_writes(handler: logging.StreamHandler[Any]) -> None:
    """Readers match lines as text (bench/observed.py), so the encoding must not drift."""
    fields: dict[str, Any] = {
        "event_id": "6e95a8fa-538d-41d2-8dbb-c311424f6614",
        "answer_code": 200,
        "latency_ms": 12.34,
        "outcome": None,
        "ok": True,
        "detail": 'a "quoted" café\n',
        "amount": Decimal("1.50"),
        "ids": ["a", 1],
        "nested": {"k": 1e-05},
    }
    log(logger, logging.INFO, "callback answered", **fields)
    written = handler.stream.getvalue()
    line = only_line(written)
    expected = {key: line[key] for key in ("ts", "level", "logger", "pid", "message")} | fields
    assert written == json.dumps(expected, default=str) + "\n"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://payouts:s3:cr@t@h1:5432,h2:5433/payouts?target_session_attrs=read-write",
            "postgresql://payouts:***@h1:5432,h2:5433/payouts?target_session_attrs=read-write",
        ),
        (
            "postgresql://payouts@[::1]:5432,h2/p?password=s3cret&sslmode=require&sslpassword=k",
            "postgresql://payouts@[::1]:5432,h2/p?password=***&sslmode=require&sslpassword=***",
        ),
        ("postgres:///p?host=/run/pg", "postgres:///p?host=/run/pg"),
        ("amqp://guest:guest@mq:5672/", "amqp://guest:***@mq:5672/"),
    ],
)
def test_a_logged_url_names_every_host_and_no_secret(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
