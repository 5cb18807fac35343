"""Logs (text or JSON lines, with the request and task they are about) and Sentry."""

from __future__ import annotations

import logging
import time

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from application import correlation
from entrypoints.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s"
NOT_JSON_FIELDS = (*RESERVED_ATTRS, "color_message")
"""Attributes of a record that are not fields of its line: ``logging``'s own, and uvicorn's
copy of the message with terminal colour codes."""


class CorrelationFilter(logging.Filter):
    """Stamps every record with the request and task of the work it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "task_id", None):
            record.task_id = correlation.task_id.get()
        if not getattr(record, "request_id", None):
            record.request_id = correlation.request_id.get()
        return True


class _SecondStamp:
    """``formatTime`` that formats the date and time once a second, not once a line (the
    same text as ``logging.Formatter``'s default)."""

    converter = staticmethod(time.localtime)
    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return time.strftime(datefmt, self.converter(record.created))
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"


class _TextFormatter(_SecondStamp, logging.Formatter):
    pass


class _JsonFormatter(_SecondStamp, JsonFormatter):
    pass


class _TaskportHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs; configuring again replaces it, and only it."""


def configure_logging(settings: Settings) -> None:
    # No format names the source line, thread or process of a record: not looking them up
    # makes every log line cheaper (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _TaskportHandler()
    handler.addFilter(CorrelationFilter())
    if settings.logs_as_json:
        handler.setFormatter(
            _JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level"},
                reserved_attrs=NOT_JSON_FIELDS,
            )
        )
    else:
        handler.setFormatter(_TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _TaskportHandler)]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # One line per outbound HTTP call is noise at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic names each of its plugins as it loads them, seven lines at every start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # uvicorn's loggers go through the same handler, so every line has one format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def init_sentry(settings: Settings) -> None:
    """Reports errors to Sentry when ``TASKPORT_SENTRY_DSN`` is set; otherwise does nothing."""
    if settings.sentry_dsn is None:
        return
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
    )
