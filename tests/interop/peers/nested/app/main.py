"""An aiohttp.web API whose token answers nest the tokens and give an absolute expiry:

    {"data": {"tokens": {"accessToken": "...", "refreshToken": "..."}}, "expires_at": 1767225600}

Access tokens are opaque (not JWTs), so ``expires_at`` (epoch seconds) is the only word on expiry.

* ``POST /v1/auth/login``: JSON ``{"email", "password"}``.
* ``POST /v1/auth/refresh``: JSON ``{"refreshToken"}``; rotates it (a used one is refused with 401).
* ``POST /v1/auth/logout``: needs the Bearer access token; JSON ``{"refreshToken"}``, revoked.
* ``GET|POST /v1/echo``: needs the Bearer access token.

Run as aiohttp's documentation shows: ``python -m aiohttp.web -H 127.0.0.1 -P 8080 main:init_func``.
Settings from the environment: PEER_EMAIL, PEER_PASSWORD, PEER_ACCESS_SECONDS.
"""

import hmac
import json
import os
import secrets
import time

from aiohttp import web

EMAIL = os.environ["PEER_EMAIL"]
PASSWORD = os.environ["PEER_PASSWORD"]
ACCESS_SECONDS = int(os.environ.get("PEER_ACCESS_SECONDS", "900"))

routes = web.RouteTableDef()


def issue(app: web.Application, email: str) -> web.Response:
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = int(time.time()) + ACCESS_SECONDS
    app["access_tokens"][access] = (email, expires_at)
    app["refresh_tokens"][refresh] = email
    return web.json_response(
        {"data": {"tokens": {"accessToken": access, "refreshToken": refresh}}, "expires_at": expires_at}
    )


def current_user(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    found = request.app["access_tokens"].get(token) if scheme == "Bearer" else None
    if found is None or found[1] <= time.time():
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "invalid_token"}), content_type="application/json"
        )
    return found[0]


async def json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "expected a JSON object"}), content_type="application/json"
        )
    return body


@routes.post("/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    good = body.get("email") == EMAIL and hmac.compare_digest(str(body.get("password", "")), PASSWORD)
    if not good:
        return web.json_response({"error": "invalid_credentials"}, status=401)
    return issue(request.app, EMAIL)


@routes.post("/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request)
    email = request.app["refresh_tokens"].pop(str(body.get("refreshToken")), None)
    if email is None:
        return web.json_response({"error": "invalid_refresh_token"}, status=401)
    return issue(request.app, email)


@routes.post("/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    email = current_user(request)
    body = await json_body(request)
    token = str(body.get("refreshToken"))
    if request.app["refresh_tokens"].get(token) == email:
        del request.app["refresh_tokens"][token]
    return web.json_response({"ok": True})


@routes.route("*", "/v1/echo")
async def echo(request: web.Request) -> web.Response:
    user = current_user(request)
    raw = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "query": request.rel_url.raw_query_string,
            "json": json.loads(raw) if raw else None,
            "user": user,
        }
    )


def init_func(argv):
    app = web.Application()
    app["access_tokens"] = {}
    app["refresh_tokens"] = {}
    app.add_routes(routes)
    return app
