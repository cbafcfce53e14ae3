"""uvicorn's access log (``bffgate serve --access-log``) without the secrets some URLs carry.

The OpenID Connect callback's query holds the authorization ``code`` and the ``state``, and the
logout redirect's holds a sealed ID-token reference: an access log is read by more people, and kept
longer, than either may live. ``RedactQueries`` replaces those queries with ``?[redacted]``; it is
installed through uvicorn's ``log_config`` so that every worker process has it. The same config drops
one false alarm of uvicorn's error log (``DeniedHandshakes``).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from .logout_redirect import REDIRECT_PATH
from .providers.oidc import CALLBACK_PATH

REDACTED_PATHS = (CALLBACK_PATH, REDIRECT_PATH)
REDACTED = "?[redacted]"


class RedactQueries(logging.Filter):
    """Drops the query of the paths in ``REDACTED_PATHS`` (also when mounted under a prefix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access records: (client_addr, method, full_path, http_version, status_code)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, separator, _ = args[2].partition("?")
            if separator and path.rstrip("/").endswith(REDACTED_PATHS):
                record.args = (*args[:2], path + REDACTED, *args[3:])
        return True


class DeniedHandshakes(logging.Filter):
    """Drops uvicorn's "returned without completing handshake" error line.

    uvicorn 0.54's websockets-sansio protocol writes it after every WebSocket handshake the app
    refused with an HTTP answer (the ASGI denial extension), which is how the gateway answers a
    handshake without a session (401) or with a foreign Origin (403): a refusal, not an error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != DENIED_HANDSHAKE_LINE


DENIED_HANDSHAKE_LINE = "ASGI callable returned without completing handshake."


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with ``RedactQueries`` on the access logger and
    ``DeniedHandshakes`` on the error logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["redact_queries"] = {"()": f"{__name__}.RedactQueries"}
    filters["denied_handshakes"] = {"()": f"{__name__}.DeniedHandshakes"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_queries"]
    config["loggers"]["uvicorn.error"]["filters"] = ["denied_handshakes"]
    return config
