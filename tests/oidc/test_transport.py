"""https everywhere for OpenID Connect, except loopback addresses or an explicit setting (issue 11,
item 15): the issuer, and every endpoint the discovery document lists."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bffgate.config import load_settings
from bffgate.errors import ConfigError, UpstreamError
from bffgate.providers.discovery import parse_metadata
from bffgate.providers.oidc import OidcProvider

from ..harness import SECRET_A, SECRET_R, serve, settings_for

HTTPS_ISSUER = "https://login.example.test"


def oidc_settings(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "remote_api": "https://api.example.test",
        "etls_access": SECRET_A,
        "etls_refresh": SECRET_R,
        "bff_provider": "oidc",
        "oidc_issuer": issuer,
        "oidc_client_id": "app",
        **extra,
    }


def test_plain_http_issuer_off_loopback_is_refused_naming_the_setting() -> None:
    """OIDC_ISSUER=http://login.example.test stops start-up, and the message names the way out."""
    with pytest.raises(ConfigError) as raised:
        load_settings(**oidc_settings("http://login.example.test"))
    assert "OIDC_ISSUER: is plain http" in str(raised.value)
    assert "OIDC_ALLOW_INSECURE_HTTP=true" in str(raised.value)


@pytest.mark.parametrize(
    "issuer", ["http://127.0.0.1:9000", "http://127.8.9.10", "http://localhost:9000", "http://[::1]:9000"]
)
def test_plain_http_issuer_on_loopback_is_accepted(issuer: str) -> None:
    assert load_settings(**oidc_settings(issuer)).oidc_issuer == issuer


def test_explicit_setting_accepts_plain_http() -> None:
    settings = load_settings(**oidc_settings("http://login.example.test", oidc_allow_insecure_http=True))
    assert settings.oidc_issuer == "http://login.example.test"


@pytest.mark.parametrize(
    "endpoint",
    ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "revocation_endpoint",
     "end_session_endpoint"],
)  # fmt: skip
def test_https_issuer_listing_a_plain_http_endpoint_is_refused(endpoint: str) -> None:
    """An https issuer whose discovery lists one plain-http endpoint (off loopback) is not usable."""
    document = {
        "issuer": HTTPS_ISSUER,
        "authorization_endpoint": f"{HTTPS_ISSUER}/authorize",
        "token_endpoint": f"{HTTPS_ISSUER}/token",
        "jwks_uri": f"{HTTPS_ISSUER}/jwks",
        endpoint: "http://login.example.test/x",
    }
    with pytest.raises(UpstreamError) as raised:
        parse_metadata(document, HTTPS_ISSUER)
    assert f"{endpoint} 'http://login.example.test/x' is plain http" in raised.value.detail
    assert parse_metadata(document, HTTPS_ISSUER, allow_insecure_http=True).issuer == HTTPS_ISSUER


@pytest.fixture
async def hostile_issuer() -> AsyncIterator[str]:
    """A loopback issuer whose discovery sends token and JWKS calls to a plain-http host elsewhere."""
    url_box: list[str] = []

    async def discovery(request: Request) -> Response:
        url = url_box[0]
        return JSONResponse(
            {
                "issuer": url,
                "authorization_endpoint": f"{url}/authorize",
                "token_endpoint": "http://tokens.example.test/token",
                "jwks_uri": "http://keys.example.test/jwks",
            }
        )

    async with serve(
        Starlette(routes=[Route("/.well-known/openid-configuration", discovery)]), lifespan="off"
    ) as url:
        url_box.append(url)
        yield url


async def test_discovery_with_plain_http_endpoints_makes_the_provider_not_ready(
    hostile_issuer: str, http: aiohttp.ClientSession
) -> None:
    """Against a live hostile issuer: login cannot start and readiness names both endpoints."""
    settings = settings_for(
        hostile_issuer, bff_provider="oidc", oidc_issuer=hostile_issuer, oidc_client_id="c"
    )
    provider = OidcProvider(settings, http)
    with pytest.raises(UpstreamError) as raised:
        await provider.start_login("/")
    assert "token_endpoint 'http://tokens.example.test/token' is plain http" in raised.value.detail
    assert "jwks_uri 'http://keys.example.test/jwks' is plain http" in raised.value.detail


def test_explicit_setting_is_announced_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    """OIDC_ALLOW_INSECURE_HTTP=true logs one warning line naming it when the provider is built."""
    settings = load_settings(**oidc_settings("http://login.example.test", oidc_allow_insecure_http=True))
    with caplog.at_level(logging.WARNING, logger="bffgate.provider"):
        OidcProvider(settings, None)  # type: ignore[arg-type]  # the HTTP client is not used here
    assert [r.getMessage() for r in caplog.records if "OIDC_ALLOW_INSECURE_HTTP=true" in r.getMessage()]
