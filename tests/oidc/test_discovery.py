"""Discovery: complete metadata is required, problems are reported clearly, good metadata is cached."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bffgate.errors import UpstreamError
from bffgate.providers.discovery import Discovery, parse_metadata
from bffgate.providers.oidc import OidcProvider

from ..harness import SECRET_A, SECRET_R, closed_port, serve, settings_for

ISSUER = "https://login.example.test"


def document(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
        **changes,
    }
    return {key: value for key, value in values.items() if value is not None}


def test_complete_metadata_is_accepted() -> None:
    """A complete document gives the endpoints and only the asymmetric algorithms it advertises."""
    metadata = parse_metadata(document(), ISSUER)
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.revocation_endpoint is None
    assert metadata.id_token_algorithms == ("RS256",)


def test_every_problem_is_reported_at_once() -> None:
    """Missing endpoints, a foreign issuer and no PKCE S256 are all named in one message."""
    broken = document(
        issuer="https://elsewhere.example.test",
        token_endpoint=None,
        jwks_uri="not a url",
        code_challenge_methods_supported=["plain"],
    )
    with pytest.raises(UpstreamError) as raised:
        parse_metadata(broken, ISSUER)
    detail = raised.value.detail
    assert "token_endpoint is missing" in detail
    assert "jwks_uri is not an http(s) URL" in detail
    assert "not OIDC_ISSUER" in detail
    assert "S256" in detail


def test_provider_signing_only_with_hmac_is_refused() -> None:
    """A provider that signs ID tokens only with HS256 is reported: bffgate accepts asymmetric keys only."""
    with pytest.raises(UpstreamError, match="no asymmetric algorithm"):
        parse_metadata(document(id_token_signing_alg_values_supported=["HS256"]), ISSUER)


def test_trailing_slash_of_the_issuer_is_kept_for_id_tokens() -> None:
    """An issuer with a trailing slash (Auth0) matches OIDC_ISSUER and is kept as the expected iss."""
    metadata = parse_metadata(document(issuer=ISSUER + "/"), ISSUER)
    assert metadata.issuer == ISSUER + "/"


class FakeIssuer:
    """A discovery endpoint whose document the test controls, counting how often it is read.

    ``others`` are more JSON documents by path (an RFC 8414 document, an issuer under a path); every
    path asked for is kept in ``requested``.
    """

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.reads = 0
        self.others: dict[str, Any] = {}
        self.requested: list[str] = []

    async def discovery(self, request: Request) -> Response:
        self.reads += 1
        self.requested.append(request.url.path)
        return JSONResponse(self.document)

    async def other(self, request: Request) -> Response:
        self.requested.append(request.url.path)
        if request.url.path not in self.others:
            return Response("<h1>Not Found</h1>", status_code=404, media_type="text/html")
        return JSONResponse(self.others[request.url.path])

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/{path:path}", self.other),
            ]
        )


@pytest.fixture
async def fake_issuer() -> AsyncIterator[tuple[str, FakeIssuer]]:
    issuer = FakeIssuer()
    async with serve(issuer.app(), lifespan="off") as url:
        yield url, issuer


async def test_incomplete_metadata_makes_the_provider_not_ready(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """ready() fails with the list of what the discovery document lacks."""
    url, issuer = fake_issuer
    issuer.document = {"issuer": url, "authorization_endpoint": f"{url}/auth"}
    provider = OidcProvider(settings_for(url, bff_provider="oidc", oidc_issuer=url, oidc_client_id="c"), http)
    with pytest.raises(UpstreamError) as raised:
        await provider.ready()
    assert "incomplete" in raised.value.detail
    assert "token_endpoint is missing" in raised.value.detail
    assert "jwks_uri is missing" in raised.value.detail


async def test_good_metadata_is_fetched_once_and_cached(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """Several logins read the discovery document once."""
    url, issuer = fake_issuer
    issuer.document = document(
        issuer=url,
        authorization_endpoint=f"{url}/auth",
        token_endpoint=f"{url}/token",
        jwks_uri=f"{url}/jwks",
    )
    settings = settings_for(url, bff_provider="oidc", oidc_issuer=url, oidc_client_id="c")
    provider = OidcProvider(settings, http)
    urls = [(await provider.start_login("/"))[0] for _ in range(3)]
    assert all(u.startswith(f"{url}/auth?") for u in urls)
    assert len(set(urls)) == 3  # a new state, nonce and verifier each time
    assert issuer.reads == 1


@pytest.mark.parametrize("command", ["check", "serve"])
def test_cli_reports_an_unreachable_issuer(command: str) -> None:
    """`bffgate check` and `bffgate serve` exit 1 with one clear line when the issuer cannot be reached."""
    issuer = f"http://127.0.0.1:{closed_port()}"
    env = {
        **os.environ,
        "REMOTE_API": "http://127.0.0.1:9/api",
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
        "BFF_PROVIDER": "oidc",
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": "bffgate",
    }
    arguments = [command, "--port", str(closed_port())] if command == "serve" else [command]
    result = subprocess.run(  # our own CLI, fixed arguments
        [sys.executable, "-m", "bffgate.cli", *arguments], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"provider: OIDC discovery: {issuer}/.well-known/openid-configuration could not be reached" in (
        result.stderr
    )
    assert "check OIDC_ISSUER" in result.stderr


def under(url: str, path: str) -> dict[str, Any]:
    """A discovery document of the issuer ``url + path`` without revocation_endpoint (as DOT's)."""
    issuer = url + path
    return document(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize/",
        token_endpoint=f"{issuer}/token/",
        jwks_uri=f"{issuer}/.well-known/jwks.json",
        userinfo_endpoint=None,
    )


async def test_revocation_endpoint_comes_from_the_oauth_metadata_after_the_issuer(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """django-oauth-toolkit under /o names revocation_endpoint only in its RFC 8414 document, which it
    serves after the issuer: bffgate takes it from there (without it, logout revoked nothing)."""
    url, issuer = fake_issuer
    issuer.others = {
        "/o/.well-known/openid-configuration": under(url, "/o"),
        "/o/.well-known/oauth-authorization-server": {
            "issuer": f"{url}/o",
            "revocation_endpoint": f"{url}/o/revoke_token/",
        },
    }
    discovery = Discovery(http, f"{url}/o", timeout=5)
    metadata = await discovery.metadata()
    assert metadata.revocation_endpoint == f"{url}/o/revoke_token/"
    assert issuer.requested == [
        "/o/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/o",  # RFC 8414 section 3 first
        "/o/.well-known/oauth-authorization-server",
    ]


async def test_revocation_endpoint_comes_from_the_rfc8414_well_known_location(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """The RFC 8414 location (well-known segment before the issuer's path) is read first."""
    url, issuer = fake_issuer
    issuer.others = {
        "/o/.well-known/openid-configuration": under(url, "/o"),
        "/.well-known/oauth-authorization-server/o": {
            "issuer": f"{url}/o",
            "revocation_endpoint": f"{url}/o/revoke/",
        },
    }
    metadata = await Discovery(http, f"{url}/o", timeout=5).metadata()
    assert metadata.revocation_endpoint == f"{url}/o/revoke/"
    assert issuer.requested[1:] == ["/.well-known/oauth-authorization-server/o"]


async def test_oauth_metadata_of_another_issuer_is_not_used(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """An RFC 8414 document naming another issuer (section 3.3) gives no revocation endpoint."""
    url, issuer = fake_issuer
    issuer.others = {
        "/o/.well-known/openid-configuration": under(url, "/o"),
        "/o/.well-known/oauth-authorization-server": {
            "issuer": "https://elsewhere.example.test/o",
            "revocation_endpoint": f"{url}/o/revoke_token/",
        },
    }
    metadata = await Discovery(http, f"{url}/o", timeout=5).metadata()
    assert metadata.revocation_endpoint is None
    assert metadata.token_endpoint == f"{url}/o/token/"  # the rest of discovery is unaffected


async def test_revocation_endpoint_in_discovery_needs_no_oauth_metadata(
    fake_issuer: tuple[str, FakeIssuer], http: aiohttp.ClientSession
) -> None:
    """A discovery document with revocation_endpoint is used alone: no RFC 8414 request."""
    url, issuer = fake_issuer
    issuer.document = document(
        issuer=url,
        authorization_endpoint=f"{url}/auth",
        token_endpoint=f"{url}/token",
        jwks_uri=f"{url}/jwks",
        revocation_endpoint=f"{url}/revoke",
    )
    metadata = await Discovery(http, url, timeout=5).metadata()
    assert metadata.revocation_endpoint == f"{url}/revoke"
    assert issuer.requested == ["/.well-known/openid-configuration"]
