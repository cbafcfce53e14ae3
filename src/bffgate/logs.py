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
import datetime
import hashlib
import json
import logging
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


def begin_request(request_id: str) -> dict[str, Any]:
    """Start collecting the current request's fields (see ``requestlog``); returns them."""
    values: dict[str, Any] = {"request_id": request_id}
    _request.set(values)
    return values


def annotate(**values: Any) -> None:
    """Add values to the current request's log line (no-op outside a request)."""
    current = _request.get()
    if current is not None:
        current.update(values)


def current_request_id() -> str | None:
    current = _request.get()
    return None if current is None else current.get("request_id")


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
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update({k: v for k, v in extra.items() if v is not None and k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=True)


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
    formatter = {"()": f"{__name__}.JsonFormatter" if log_format == "json" else f"{__name__}.TextFormatter"}
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
    config["root"] = {"handlers": ["default"], "level": level}
    return config
