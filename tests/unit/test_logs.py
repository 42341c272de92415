"""The structured log line: one JSON object, naming the process that wrote it."""

from __future__ import annotations

import io
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import pytest

from schema.logs import configure_logging, log, log_exception, logged_fields

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
