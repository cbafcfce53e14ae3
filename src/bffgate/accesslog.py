"""uvicorn's access log (``bffgate serve --access-log``) without the secrets some URLs carry.

The OpenID Connect callback's query holds the authorization ``code`` and the ``state``, and the
logout redirect's holds a sealed ID-token reference: an access log is read by more people, and kept
longer, than either may live. ``RedactQueries`` replaces those queries with ``?[redacted]``; it is
installed through uvicorn's ``log_config`` so that every worker process has it.
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


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with ``RedactQueries`` on the access logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_queries"] = {"()": f"{__name__}.RedactQueries"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_queries"]
    return config
