"""Logs (text or JSON lines, with the request and task they are about) and Sentry."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from application import correlation
from entrypoints.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s"


class CorrelationFilter(logging.Filter):
    """Stamps every record with the request and task of the work it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "task_id", None):
            record.task_id = correlation.task_id.get()
        if not getattr(record, "request_id", None):
            record.request_id = correlation.request_id.get()
        return True


class _TaskportHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs; configuring again replaces it, and only it."""


def configure_logging(settings: Settings) -> None:
    # No format here names the caller, thread or process: the logging module is told not
    # to look them up for every record (its documented optimisations).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _TaskportHandler()
    handler.addFilter(CorrelationFilter())
    if settings.logs_as_json:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _TaskportHandler)]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # One line per outbound HTTP call is noise at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
