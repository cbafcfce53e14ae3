"""Log lines: JSON (one object a line, for collectors) or text (for a terminal), over stdlib logging.

Every ``logging.getLogger(...)`` call of the code base keeps working: this module only installs the
formatter and a filter on the root handler. Two things are added to records:

* ``fields``: structured values given as ``log.info("...", extra=fields(key=value))``; JSON puts them
  at the top level, text appends them as ``key=value``.
* the request's context: while a request runs (see ``requestlog``), every record logged on its behalf
  carries its ``request_id``, and ``annotate`` lets the code on the way (the session load, the
  refresh, the upstream call) add values to the request's own line.

Nothing secret is ever passed to either: sessions appear as ``fingerprint(sid)``, users as
``user_hash(...)`` (both one-way), never a token, a cookie value or a credential.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import logging
import time
from typing import Any

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The fields of the request being handled (None outside a request): a dict shared, by reference,
# with the tasks the request starts (a single-flight refresh notes its outcome on its first caller).
_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bffgate_request", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a structured log line: ``log.info("login", extra=fields(session=...))``."""
    return {"fields": values}


def collect(values: dict[str, Any]) -> contextvars.Token[dict[str, Any] | None]:
    """Make ``values`` the current request's fields (see ``requestlog``); its ``request_id`` (str, or
    bytes as the request layer keeps it) names the request on every line logged on its behalf."""
    return _request.set(values)


def stop_collecting(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _request.reset(token)


def annotate(**values: Any) -> None:
    """Add values to the current request's log line (no-op outside a request)."""
    current = _request.get()
    if current is not None:
        current.update(values)


def request_fields() -> dict[str, Any] | None:
    """The current request's fields, to add to directly on the request path (None outside one)."""
    return _request.get()


def current_request_id() -> str | None:
    current = _request.get()
    request_id = None if current is None else current.get("request_id")
    return request_id.decode() if isinstance(request_id, bytes) else request_id


def fingerprint(sid: str) -> str:
    """A session's name in logs: stable per session, useless as a cookie (one-way, 12 hex digits)."""
    return hashlib.sha256(b"bffgate-session:" + sid.encode(errors="surrogateescape")).hexdigest()[:12]


def user_hash(user: dict[str, Any] | None) -> str | None:
    """A user's name in logs: a one-way hash of the user's id (``sub`` or ``id``), else None."""
    if not user:
        return None
    for claim in ("sub", "id", "user_id", "username", "email"):
        value = user.get(claim)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return hashlib.sha256(b"bffgate-user:" + str(value).encode()).hexdigest()[:16]
    return None


class RequestContext(logging.Filter):
    """Puts the current request's id on every record logged while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if value is not None and key not in line:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(line)


_JSON = json.JSONEncoder(default=str, ensure_ascii=True)
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _utc_time(created: float) -> str:
    """``2026-12-02T00:45:23.878+00:00``; the part up to the second is formatted once a second."""
    global _second
    seconds = int(created)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}+00:00"


class TextFormatter(logging.Formatter):
    """The classic terminal line, with the structured fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = []
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            pairs.append(f"request_id={request_id}")
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            pairs += [f"{k}={_text_value(v)}" for k, v in extra.items() if v is not None]
        return f"{text} {' '.join(pairs)}" if pairs else text


def _text_value(value: Any) -> str:
    text = str(value)
    # Hostile paths and headers must not forge lines or spaces in a terminal's log.
    return json.dumps(text) if not text.isprintable() or " " in text or not text else text


def logging_config(
    log_format: str = "text", level: str = "INFO", base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the whole process (uvicorn's loggers included).

    ``base`` is uvicorn's configuration (with its filters, e.g. ``accesslog.RedactQueries``): its
    handlers keep their filters and get this module's formatter, and everything logs at ``level``.
    """
    config: dict[str, Any] = copy.deepcopy(base) if base is not None else {"version": 1}
    config["disable_existing_loggers"] = False
    formatter = {"()": f"{__name__}.process_formatter", "log_format": log_format}
    config["formatters"] = {"bffgate": formatter}
    config.setdefault("filters", {})["request_context"] = {"()": f"{__name__}.RequestContext"}
    handlers: dict[str, dict[str, Any]] = config.setdefault("handlers", {})
    handlers["default"] = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "bffgate",
        "filters": ["request_context"],
    }
    for name, handler in handlers.items():
        handler["formatter"] = "bffgate"  # uvicorn's access log keeps its stream (stdout)
        handler["filters"] = sorted({*handler.get("filters", []), "request_context"})
        handlers[name] = handler
    loggers: dict[str, dict[str, Any]] = config.setdefault("loggers", {})
    for logger in loggers.values():
        logger["level"] = level
    loggers["bffgate"] = {"level": level}
    # The line per request: always in JSON (for a collector); in text (a terminal) only at DEBUG, so
    # the default costs what it did before structured logs (see README "Operating bffgate").
    loggers["bffgate.request"] = {"level": level if log_format == "json" or level == "DEBUG" else "WARNING"}
    config["root"] = {"handlers": ["default"], "level": level}
    return config


def process_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``logging_config``: the process's logs go through bffgate's formatters."""
    lean_records()
    return JsonFormatter() if log_format == "json" else TextFormatter()


def lean_records() -> None:
    """Where bffgate's formatters write the process's logs (``bffgate serve``, each worker): records
    without the caller's file and line, thread and process names, which neither formatter shows;
    gathering them is much of a record's cost (the logging HOWTO's "Optimization" section)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
