"""A Flask API authenticated with Flask-JWT-Extended, written the way that library's docs show it.

- ``POST /login``: JSON ``{"username", "password"}`` → ``{"access_token", "refresh_token"}``
  (``request.json``: Flask answers 415 to a body without ``Content-Type: application/json``).
- ``POST /refresh``: ``@jwt_required(refresh=True)``, the refresh token as ``Authorization: Bearer``;
  answers a new ``access_token`` only (the docs' refresh does not rotate the refresh token).
- ``GET|POST /api/echo``: ``@jwt_required()``; echoes the caller, the raw query string and the JSON body.
- ``DELETE /logout``: ``@jwt_required(verify_type=False)``; puts the presented token (access or
  refresh) on the blocklist, which ``@jwt.token_in_blocklist_loader`` consults on every request.

Served by gunicorn with one worker (threads for concurrency): the blocklist lives in this process, where
the docs keep it in Redis or a database so that several workers share it.

Settings from the environment: ``JWT_SECRET_KEY``, ``JWT_ACCESS_TOKEN_EXPIRES`` (seconds).
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
)

USERS = {"alice": "wonderland", "bob": "builder"}

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["JWT_SECRET_KEY"]
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(
    seconds=int(os.environ.get("JWT_ACCESS_TOKEN_EXPIRES", "900"))
)
jwt = JWTManager(app)

blocklist: set[str] = set()
lock = threading.Lock()


@jwt.token_in_blocklist_loader
def check_if_token_revoked(jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
    with lock:
        return jwt_payload["jti"] in blocklist


@app.post("/login")
def login() -> Any:
    username = request.json.get("username", None)
    password = request.json.get("password", None)
    if USERS.get(username) != password or password is None:
        return jsonify({"msg": "Bad username or password"}), 401
    access_token = create_access_token(identity=username)
    refresh_token = create_refresh_token(identity=username)
    return jsonify(access_token=access_token, refresh_token=refresh_token)


@app.post("/refresh")
@jwt_required(refresh=True)
def refresh() -> Any:
    identity = get_jwt_identity()
    access_token = create_access_token(identity=identity)
    return jsonify(access_token=access_token)


@app.get("/api/echo")
@jwt_required()
def echo_get() -> Any:
    return jsonify(user=get_jwt_identity(), method="GET", query=request.query_string.decode(), json=None)


@app.post("/api/echo")
@jwt_required()
def echo_post() -> Any:
    return jsonify(
        user=get_jwt_identity(), method="POST", query=request.query_string.decode(), json=request.get_json()
    )


@app.delete("/logout")
@jwt_required(verify_type=False)
def logout() -> Any:
    token = get_jwt()
    with lock:
        blocklist.add(token["jti"])
    return jsonify(msg=f"{token['type'].capitalize()} token successfully revoked")
