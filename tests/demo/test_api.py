"""Behaviour of the bundled demo API, exercised over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import time_machine
from joserfc import jwt
from joserfc.jwk import OctKey
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from bffgate.demo.api import DOWNLOAD_CHUNK_SIZE, DOWNLOAD_MAX_SIZE, DemoState, create_demo_api

from .. import harness

# --- real server harness (to move into tests/conftest.py once shared) ----------------------------


def serve(app: ASGIApp) -> contextlib.AbstractAsyncContextManager[str]:
    return harness.serve(app, lifespan="off")


@dataclass
class Demo:
    """A running demo API: its URL, its in-memory state and a client session."""

    url: str
    state: DemoState
    http: aiohttp.ClientSession

    async def login(self) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/auth/login", json=CREDENTIALS) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

    async def post(self, path: str, payload: object) -> tuple[int, Any]:
        async with self.http.post(f"{self.url}{path}", json=payload) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, access_token: str | None) -> tuple[int, Any]:
        headers = {} if access_token is None else {"Authorization": f"Bearer {access_token}"}
        async with self.http.get(f"{self.url}{path}", headers=headers) as resp:
            return resp.status, await resp.json()


CREDENTIALS: Mapping[str, str] = {"username": "demo", "password": "demo"}
DEMO_USER = {"id": "demo", "name": "Demo User", "email": "demo@example.com"}
PROTECTED_PATHS = ["/me", "/items", "/items/1", "/download?size=10", "/stats"]


@contextlib.asynccontextmanager
async def running_demo(**ttls: float) -> AsyncIterator[Demo]:
    """A fresh demo API (``access_ttl``/``refresh_ttl`` passed through) with a client session."""
    app, state = create_demo_api(**ttls)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        yield Demo(url, state, http)


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    async with running_demo() as running:
        yield running


# --- login ----------------------------------------------------------------------------------------


async def test_health_needs_no_token(demo: Demo) -> None:
    """The health check answers ok without any credentials."""
    assert await demo.get("/health", None) == (200, {"status": "ok"})


async def test_login_returns_token_pair_and_user(demo: Demo) -> None:
    """Correct credentials yield an access token, a refresh token, a lifetime and the user."""
    body = await demo.login()
    assert body["user"] == DEMO_USER
    assert body["expiresIn"] == 20
    assert isinstance(body["accessToken"], str)
    assert isinstance(body["refreshToken"], str)
    assert demo.state.login_calls == 1


async def test_each_login_starts_a_new_family(demo: Demo) -> None:
    """Two logins get refresh tokens of two different families."""
    first, second = await demo.login(), await demo.login()
    families = {demo.state.family_of_refresh_token(b["refreshToken"]) for b in (first, second)}
    assert len(families) == 2
    assert None not in families


@pytest.mark.parametrize(
    "credentials",
    [{"username": "demo", "password": "wrong"}, {"username": "admin", "password": "demo"}],
)
async def test_login_with_wrong_credentials_is_401(demo: Demo, credentials: dict[str, str]) -> None:
    """A wrong username or password is rejected with invalid_credentials."""
    assert await demo.post("/auth/login", credentials) == (401, {"error": "invalid_credentials"})


# --- protected resources --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED_PATHS)
async def test_protected_resource_without_token_is_401(demo: Demo, path: str) -> None:
    """Every protected resource refuses a request without a bearer token."""
    async with demo.http.get(f"{demo.url}{path}") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert await resp.json() == {"error": "invalid_token"}


def _foreign_token(alg_none: bool) -> str:
    claims = {"sub": "demo", "iat": time.time(), "exp": time.time() + 60, "jti": "x", "fam": "x"}
    if alg_none:
        # Built by hand: joserfc (rightly) refuses to produce an unsigned token.
        header, payload = (_b64url(json.dumps(part)) for part in ({"alg": "none"}, claims))
        return f"{header}.{payload}."
    return jwt.encode({"alg": "HS256"}, claims, OctKey.generate_key(256))


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", _foreign_token(alg_none=False), _foreign_token(alg_none=True)],
    ids=["garbage", "dots", "other-key", "alg-none"],
)
async def test_protected_resource_with_invalid_token_is_401(demo: Demo, token: str) -> None:
    """Malformed, foreign-signed and unsigned tokens are all invalid_token, never a 500."""
    assert await demo.get("/me", token) == (401, {"error": "invalid_token"})


async def test_me_returns_the_user(demo: Demo) -> None:
    """A valid access token reads the user object."""
    token = (await demo.login())["accessToken"]
    assert await demo.get("/me", token) == (200, DEMO_USER)


async def test_items_list_get_and_create(demo: Demo) -> None:
    """Items can be listed, fetched by id (404 when unknown) and created with a fresh id."""
    token = (await demo.login())["accessToken"]
    status, items = await demo.get("/items", token)
    assert status == 200
    assert len(items) == 5
    assert all(set(item) == {"id", "name", "price"} for item in items)
    assert await demo.get(f"/items/{items[0]['id']}", token) == (200, items[0])
    assert await demo.get("/items/999", token) == (404, {"error": "not_found"})

    new = {"name": "Desk lamp", "price": 25}
    async with demo.http.post(
        f"{demo.url}/items", json=new, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert created["id"] not in {item["id"] for item in items}
    assert created == {**new, "id": created["id"]}


async def test_unknown_route_is_json_404(demo: Demo) -> None:
    """A path the API does not have answers JSON not_found like every other error."""
    assert await demo.get("/nope", None) == (404, {"error": "not_found"})


async def test_works_mounted_under_a_prefix() -> None:
    """Mounted below a prefix, the API serves its routes relative to that prefix."""
    api, _state = create_demo_api()
    outer = Starlette(routes=[Mount("/api", app=api)])
    async with serve(outer) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/auth/login", json=CREDENTIALS) as resp:
            token = (await resp.json())["accessToken"]
        async with http.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert (resp.status, await resp.json()) == (200, DEMO_USER)


# --- refresh rotation and reuse detection ---------------------------------------------------------


async def test_refresh_rotates_the_token_pair(demo: Demo) -> None:
    """Refreshing with the current token returns a new pair in the same family that works."""
    login = await demo.login()
    status, body = await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]})
    assert status == 200
    assert body["user"] == DEMO_USER
    assert body["refreshToken"] != login["refreshToken"]
    assert body["accessToken"] != login["accessToken"]
    family = demo.state.family_of_refresh_token(login["refreshToken"])
    assert demo.state.family_of_refresh_token(body["refreshToken"]) == family
    assert await demo.get("/me", body["accessToken"]) == (200, DEMO_USER)
    # The next rotation must start from the new token.
    status, _ = await demo.post("/auth/refresh", {"refreshToken": body["refreshToken"]})
    assert status == 200


async def test_reusing_a_superseded_refresh_token_revokes_the_family(demo: Demo) -> None:
    """Presenting an already-rotated refresh token kills the family's current tokens too."""
    login = await demo.login()
    _, rotated = await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]})

    reuse = await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]})

    assert reuse == (400, {"error": "invalid_grant"})
    assert demo.state.reuse_detected == 1
    assert await demo.post("/auth/refresh", {"refreshToken": rotated["refreshToken"]}) == (
        400,
        {"error": "invalid_grant"},
    )
    assert await demo.get("/me", rotated["accessToken"]) == (401, {"error": "invalid_token"})
    assert await demo.get("/me", login["accessToken"]) == (401, {"error": "invalid_token"})


async def test_reuse_leaves_other_families_alone(demo: Demo) -> None:
    """Revoking one family on reuse does not affect another login's tokens."""
    victim, bystander = await demo.login(), await demo.login()
    await demo.post("/auth/refresh", {"refreshToken": victim["refreshToken"]})
    await demo.post("/auth/refresh", {"refreshToken": victim["refreshToken"]})
    assert await demo.get("/me", bystander["accessToken"]) == (200, DEMO_USER)


async def test_concurrent_refreshes_with_one_token_count_as_reuse(demo: Demo) -> None:
    """Two simultaneous refreshes with the same token: one rotates, the other revokes the family."""
    login = await demo.login()
    payload = {"refreshToken": login["refreshToken"]}
    results = await asyncio.gather(*(demo.post("/auth/refresh", payload) for _ in range(2)))
    assert sorted(status for status, _ in results) == [200, 400]
    assert demo.state.reuse_detected == 1
    winner = next(body for status, body in results if status == 200)
    assert await demo.get("/me", winner["accessToken"]) == (401, {"error": "invalid_token"})


@pytest.mark.parametrize("token", ["", "unknown-token"])
async def test_refresh_with_unknown_token_is_invalid_grant(demo: Demo, token: str) -> None:
    """A refresh token the API never issued is invalid_grant."""
    assert await demo.post("/auth/refresh", {"refreshToken": token}) == (400, {"error": "invalid_grant"})


async def test_expired_refresh_token_is_invalid_grant() -> None:
    """A refresh token past its lifetime no longer rotates."""
    async with running_demo(refresh_ttl=60.0) as demo:
        login = await demo.login()
        with time_machine.travel(time.time() + 120, tick=True):
            status, body = await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]})
        assert (status, body) == (400, {"error": "invalid_grant"})


# --- logout -----------------------------------------------------------------------------------


async def test_logout_revokes_the_family(demo: Demo) -> None:
    """After logout neither the refresh token nor the access token of that login works."""
    login = await demo.login()
    assert await demo.post("/auth/logout", {"refreshToken": login["refreshToken"]}) == (
        200,
        {"message": "Logged out"},
    )
    assert await demo.get("/me", login["accessToken"]) == (401, {"error": "invalid_token"})
    assert await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]}) == (
        400,
        {"error": "invalid_grant"},
    )
    assert demo.state.logout_calls == 1


async def test_logout_with_unknown_token_still_succeeds(demo: Demo) -> None:
    """Logging out with a token the API does not know is not an error."""
    assert await demo.post("/auth/logout", {"refreshToken": "nope"}) == (200, {"message": "Logged out"})


# --- download ---------------------------------------------------------------------------------


def _expected_download(size: int) -> bytes:
    return bytes(i % 256 for i in range(size))


@pytest.mark.parametrize("size", [0, 1, DOWNLOAD_CHUNK_SIZE, 3 * DOWNLOAD_CHUNK_SIZE + 123])
async def test_download_returns_exactly_n_bytes(demo: Demo, size: int) -> None:
    """A download of N bytes announces N in Content-Length and delivers the deterministic N bytes."""
    token = (await demo.login())["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    async with demo.http.get(f"{demo.url}/download", params={"size": size}, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Length"] == str(size)
        assert await resp.read() == _expected_download(size)


async def test_download_defaults_to_one_mebibyte(demo: Demo) -> None:
    """Without a size the download is 1 MiB."""
    token = (await demo.login())["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    async with demo.http.get(f"{demo.url}/download", headers=headers) as resp:
        assert resp.headers["Content-Length"] == str(1024 * 1024)
        assert len(await resp.read()) == 1024 * 1024


async def test_download_size_is_capped(demo: Demo) -> None:
    """Sizes beyond the cap are clamped to 200 MiB (headers checked, body not read)."""
    token = (await demo.login())["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    async with demo.http.get(f"{demo.url}/download?size={10**30}", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(DOWNLOAD_MAX_SIZE)


@pytest.mark.parametrize("size", ["-1", "abc", "1.5", "", "١٢"])
async def test_download_with_bad_size_is_400(demo: Demo, size: str) -> None:
    """A size that is not a non-negative decimal integer is invalid_request."""
    token = (await demo.login())["accessToken"]
    status, body = await demo.get(f"/download?size={size}", token)
    assert (status, body) == (400, {"error": "invalid_request"})


# --- stats ------------------------------------------------------------------------------------


async def test_stats_count_refreshes_per_family_and_in_total(demo: Demo) -> None:
    """Stats report the caller's family's refresh calls and all refresh calls, failed ones included."""
    mine, other = await demo.login(), await demo.login()
    _, rotated = await demo.post("/auth/refresh", {"refreshToken": mine["refreshToken"]})
    await demo.post("/auth/refresh", {"refreshToken": other["refreshToken"]})
    await demo.post("/auth/refresh", {"refreshToken": "unknown"})
    await demo.post("/auth/refresh", "not an object")

    status, stats = await demo.get("/stats", rotated["accessToken"])

    family = demo.state.family_of_refresh_token(mine["refreshToken"])
    assert (status, stats) == (200, {"refreshes": 1, "totalRefreshes": 4, "family": family})
    assert demo.state.refresh_calls == 4


# --- malformed input --------------------------------------------------------------------------

MALFORMED_BODIES = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'"string"',
    b"\xff\xfe",
    b"[" * 100_000,
    b'{"username": 1, "password": "demo", "refreshToken": 1}',
    b'{"refreshToken": null, "username": null}',
]


@pytest.mark.parametrize("path", ["/auth/login", "/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize("body", MALFORMED_BODIES)
async def test_malformed_auth_bodies_are_400(demo: Demo, path: str, body: bytes) -> None:
    """Bodies that are not the expected JSON object are invalid_request, never a 500."""
    headers = {"Content-Type": "application/json"}
    async with demo.http.post(f"{demo.url}{path}", data=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "invalid_request"})


@pytest.mark.parametrize(
    "body",
    [*MALFORMED_BODIES, b'{"name": "x"}', b'{"name": "x", "price": true}', b'{"name": "", "price": 1}'],
)
async def test_malformed_item_bodies_are_400(demo: Demo, body: bytes) -> None:
    """Creating an item from a malformed body is invalid_request, never a 500."""
    token = (await demo.login())["accessToken"]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    async with demo.http.post(f"{demo.url}/items", data=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "invalid_request"})


# --- expiry -----------------------------------------------------------------------------------


async def test_expired_access_token_is_401(demo: Demo) -> None:
    """An access token is refused once its lifetime has passed, while a refresh still works."""
    login = await demo.login()
    with time_machine.travel(time.time() + 21, tick=True):
        assert await demo.get("/me", login["accessToken"]) == (401, {"error": "invalid_token"})
        status, body = await demo.post("/auth/refresh", {"refreshToken": login["refreshToken"]})
        assert status == 200
        assert await demo.get("/me", body["accessToken"]) == (200, DEMO_USER)


def test_expires_in_is_whole_seconds_but_at_least_one() -> None:
    """expiresIn truncates the access lifetime to seconds and never reports zero."""
    assert create_demo_api(access_ttl=0.2)[1].expires_in == 1
    assert create_demo_api(access_ttl=20.9)[1].expires_in == 20
