"""A Flask app (under gunicorn) that records every request it receives: an API behind a route.

The same interface as ``fastapi_recorder.py``: ``GET /__log``, ``POST /__reject``, anything else 200.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)
received: list[dict[str, Any]] = []
rejected: set[str] = set()
lock = threading.Lock()


@app.get("/__log")
def log() -> ResponseReturnValue:
    with lock:
        return jsonify(list(received))


@app.post("/__reject")
def reject() -> ResponseReturnValue:
    with lock:
        rejected.add(request.get_data(as_text=True))
    return jsonify(ok=True)


@app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def anything(path: str) -> ResponseReturnValue:
    raw = request.environ.get("RAW_URI") or request.full_path
    headers = [[name.lower(), value] for name, value in request.headers.items()]
    with lock:
        received.append({"method": request.method, "path": raw, "headers": headers})
        refused = request.headers.get("Authorization", "").removeprefix("Bearer ") in rejected
    if refused:
        return jsonify(error="invalid_token"), 401
    authorized = bool(request.headers.get("Authorization"))
    return jsonify(api="flask", path=raw.split("?")[0], authorized=authorized)
