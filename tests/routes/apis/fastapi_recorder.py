"""A FastAPI app (under uvicorn) that records every request it receives: an API behind a route.

``GET /__log``: what it received (method, raw path, headers); ``POST /__reject``: the Bearer token in
the body is refused with 401 from then on (an API that revoked it). Any other path answers 200 with
what it saw of the request.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

NAME = os.environ.get("RECORDER_NAME", "fastapi")
app = FastAPI()
received: list[dict[str, Any]] = []
rejected: set[str] = set()


@app.get("/__log")
async def log() -> list[dict[str, Any]]:
    return received


@app.post("/__reject")
async def reject(request: Request) -> dict[str, bool]:
    rejected.add((await request.body()).decode())
    return {"ok": True}


@app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def anything(path: str, request: Request) -> JSONResponse:
    raw = request.scope["raw_path"].decode("latin-1")
    query = request.scope["query_string"].decode("latin-1")
    headers = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in request.scope["headers"]]
    received.append(
        {"method": request.method, "path": raw + (f"?{query}" if query else ""), "headers": headers}
    )
    authorization = request.headers.get("authorization", "")
    if authorization.removeprefix("Bearer ") in rejected:
        return JSONResponse({"error": "invalid_token"}, status_code=401)
    return JSONResponse({"api": NAME, "path": raw, "authorized": bool(authorization)})
