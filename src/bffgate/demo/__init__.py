"""``bffgate demo``: the gateway, the bundled demo API and the demo page in one process, one port.

The demo API is mounted at ``/_demo/api`` and the gateway reaches it over loopback HTTP like any
remote API, so the demo exercises exactly the code a real deployment runs.
"""

from __future__ import annotations

import secrets
from importlib.resources import files

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ..app import create_app
from ..config import Settings
from .api import DemoState, create_demo_api

DEMO_API_PATH = "/_demo/api"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # what people type for "this machine"
STATIC = files("bffgate") / "static"


def demo_settings(host: str, port: int, **overrides: object) -> Settings:
    """Settings for the demo: random secrets (a restart logs everyone out), the API on our own port.

    The demo's page works under every loopback name of its port (``localhost``, ``127.0.0.1``,
    ``[::1]``), whichever the user typed: they are all allowed origins. Only the demo does this; a
    real deployment allows its BFF_PUBLIC_URL and BFF_ALLOWED_ORIGINS, nothing else.
    """
    public_url = str(overrides.get("bff_public_url") or f"http://{host}:{port}")
    values: dict[str, object] = {
        "remote_api": f"http://{host}:{port}{DEMO_API_PATH}",
        "etls_access": secrets.token_urlsafe(48),
        "etls_refresh": secrets.token_urlsafe(48),
        "bff_public_url": public_url,
        "bff_allowed_origins": ",".join([public_url, *(f"http://{name}:{port}" for name in LOOPBACK_NAMES)]),
        "bff_login_page": "/",
        "bff_logout_url": "/auth/logout",  # logout revokes the refresh-token family upstream
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]  # pydantic validates the values


def page_routes() -> list[Route]:
    """The demo page at ``/`` (the gateway itself serves ``/bffgate.js``)."""

    async def page(request: Request) -> Response:
        body = (STATIC / "demo.html").read_bytes()
        return Response(body, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return [Route("/", page, methods=["GET"])]


def create_demo_app(
    host: str, port: int, *, access_ttl: float = 20.0, **overrides: object
) -> tuple[Starlette, DemoState]:
    """The whole demo as one ASGI app, and the demo API's state (refresh counts) for tests."""
    api, state = create_demo_api(access_ttl=access_ttl)
    app = create_app(
        demo_settings(host, port, **overrides),
        extra_routes=[Mount(DEMO_API_PATH, app=api), *page_routes()],
    )
    return app, state
