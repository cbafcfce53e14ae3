"""The OIDC test provider (node oidc-provider) as a process, and a user who signs in on its pages.

``ProviderProcess`` installs the pinned provider (``npm ci`` into the ignored ``provider/node_modules``
when it is missing), starts ``node provider/server.mjs`` on an ephemeral port and reads the issuer from
the line it prints. ``ProviderApi`` is what tests ask the running provider (client registration,
introspection, the refresh counters). ``ProviderUser`` is the person at the browser: it follows the
provider's redirects and submits its login and consent forms over plain HTTP (any provider's: the
login form's field names are its ``credentials``). ``start_login`` and ``callback`` are the gateway's
side of a sign-in, ``sign_in`` the whole of it.
"""

from __future__ import annotations

import base64
import selectors
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import aiohttp

from ..harness import Answer, Browser

PROVIDER_DIR = Path(__file__).parent / "provider"
ISSUER_MARKER = "BFFGATE_TEST_ISSUER "
START_TIMEOUT = 60.0
MAX_HOPS = 12
HELD_TIMEOUT = aiohttp.ClientTimeout(total=30)  # a refresh that never comes fails the test, not the run
MIN_NODE_MAJOR = 20  # oidc-provider 9 (the maintained line) runs on 20 and supports 22+ officially


class ProviderProcess:
    """``node server.mjs`` on an ephemeral loopback port, stopped by its PID."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.issuer = ""
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._log: IO[str] | None = None

    def start(self) -> str:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            raise RuntimeError(
                "the OIDC tests need Node.js and npm on PATH (scripts/test-services installs them)"
            )
        version = subprocess.run(  # fixed arguments
            [node, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
            raise RuntimeError(f"the OIDC tests need Node.js {MIN_NODE_MAJOR} or newer, found {version}")
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            subprocess.run(  # fixed arguments, the pinned lock file
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROVIDER_DIR, check=True
            )
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(  # fixed arguments
            [node, "server.mjs", "0"],
            cwd=PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.issuer = self._read_issuer()
        stdout = self._process.stdout
        assert stdout is not None
        # Keep reading whatever else it prints, so that a full pipe never blocks it.
        self._drain = threading.Thread(target=stdout.read, daemon=True)
        self._drain.start()
        return self.issuer

    def _read_issuer(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = self._process.stdout.readline()
                if not line:  # it exited
                    break
                if line.startswith(ISSUER_MARKER):
                    return line[len(ISSUER_MARKER) :].strip()
        self.stop()
        raise RuntimeError(f"the OIDC test provider did not start; see {self.log_path}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if self._drain is not None:
                self._drain.join(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str | None
    auth_method: str


@dataclass
class ProviderApi:
    """The running provider, as the tests (not the gateway) talk to it."""

    issuer: str
    http: aiohttp.ClientSession

    async def register(
        self,
        gateway_url: str,
        auth_method: str = "client_secret_basic",
        extra: Mapping[str, Any] | None = None,
    ) -> Client:
        """A new client (RFC 7591) whose redirect and post-logout URIs point at ``gateway_url``.

        ``extra`` adds client metadata, e.g. ``backchannel_logout_uri``.
        """
        metadata = {
            "redirect_uris": [f"{gateway_url}/api/auth/callback"],
            "post_logout_redirect_uris": [f"{gateway_url}/"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": auth_method,
            **(extra or {}),
        }
        async with self.http.post(f"{self.issuer}/reg", json=metadata) as response:
            body = await response.json()
            assert response.status == 201, body
        return Client(body["client_id"], body.get("client_secret"), auth_method)

    async def stats(self, client_id: str) -> dict[str, int]:
        """Token-endpoint calls of the client by grant type and status: ``{"refresh_token 200": 1}``."""
        async with self.http.get(f"{self.issuer}/__test/stats", params={"client_id": client_id}) as response:
            return dict(await response.json())

    async def forge_next_id_token(self, client_id: str, mode: str) -> None:
        params = {"client_id": client_id, "mode": mode}
        async with self.http.post(f"{self.issuer}/__test/forge", params=params) as response:
            assert response.status == 200

    async def hold_next_refresh(self, client_id: str) -> None:
        """The client's next successful refresh grant issues its tokens but answers only on ``release``."""
        async with self.http.post(f"{self.issuer}/__test/hold", params={"client_id": client_id}) as response:
            assert response.status == 200

    async def refresh_held(self, client_id: str) -> None:
        """Returns once the held refresh answer exists (the provider has rotated the token)."""
        async with self.http.get(
            f"{self.issuer}/__test/held", params={"client_id": client_id}, timeout=HELD_TIMEOUT
        ) as response:
            assert response.status == 200

    async def release(self, client_id: str) -> None:
        async with self.http.post(
            f"{self.issuer}/__test/release", params={"client_id": client_id}
        ) as response:
            assert response.status == 200

    async def last_tokens(self, client_id: str) -> dict[str, Any]:
        """The body of the client's last successful token answer (tokens the gateway never showed)."""
        async with self.http.get(
            f"{self.issuer}/__test/last-tokens", params={"client_id": client_id}
        ) as response:
            return dict(await response.json())

    async def end_session_endpoint(self) -> str:
        """The provider's RP-initiated logout endpoint, from its discovery document."""
        async with self.http.get(f"{self.issuer}/.well-known/openid-configuration") as response:
            return str((await response.json())["end_session_endpoint"])

    async def introspect(self, client: Client, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, authenticated as ``client``."""
        async with self.http.post(
            f"{self.issuer}/token/introspection", data={"token": token}, headers=_basic(client)
        ) as response:
            assert response.status == 200
            return dict(await response.json())

    async def revoke(self, client: Client, token: str) -> None:
        """RFC 7009 revocation, as when the user withdraws the app's access at the provider."""
        async with self.http.post(
            f"{self.issuer}/token/revocation", data={"token": token}, headers=_basic(client)
        ) as response:
            assert response.status == 200

    async def resource(self, access_token: str) -> int:
        """The protected resource's status for a bearer token."""
        headers = {"Authorization": f"Bearer {access_token}"}
        async with self.http.get(f"{self.issuer}/resource/me", headers=headers) as response:
            return response.status


def _basic(client: Client) -> dict[str, str]:
    pair = f"{client.client_id}:{client.client_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class FormParser(HTMLParser):
    """The forms of a page, with the names and values of their inputs (``form=`` attributes included)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._ids: dict[str, Form] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            form = Form(values.get("action", ""), values.get("method", "get").lower())
            self.forms.append(form)
            if "id" in values:
                self._ids[values["id"]] = form
        elif tag == "input" and "name" in values:
            owner = self._ids.get(values.get("form", "")) or (self.forms[-1] if self.forms else None)
            if owner is not None:
                owner.fields[values["name"]] = values.get("value", "")
        elif tag == "a" and "href" in values:
            self.links.append(values["href"])


def parse_page(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


class ProviderUser:
    """A person signing in at the provider: its cookies, its forms, its redirects."""

    def __init__(
        self, gateway_url: str, login: str = "alice", credentials: Mapping[str, str] | None = None
    ) -> None:
        """``credentials`` are the login form's fields by name, the first naming the user (Django's
        ``{"username": ..., "password": ...}``); by default oidc-provider's ``login`` and ``password``."""
        self.gateway_url = gateway_url
        self.login = login
        self.credentials = dict(credentials or {"login": login, "password": "any password"})
        # The provider's own cookies (host 127.0.0.1 needs ``unsafe``); the gateway's are the Browser's.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, authorization_url: str, *, cancel: bool = False) -> str:
        """Follow the provider's pages from ``authorization_url``; the URL it sends back to the gateway."""
        url, method, data = authorization_url, "GET", None
        for _ in range(MAX_HOPS):
            async with self.http.request(method, url, data=data, allow_redirects=False) as response:
                body = await response.text()
                location = response.headers.get("Location")
            if location is not None:
                url, method, data = urljoin(url, location), "GET", None
                if url.startswith(self.gateway_url + "/"):
                    return url
                continue
            assert response.status == 200, body
            page = parse_page(body)
            if cancel:
                url = urljoin(url, next(link for link in page.links if link.endswith("/abort")))
                continue
            form = page.forms[0]
            if next(iter(self.credentials)) in form.fields:  # the login form, not the consent form
                form.fields.update(self.credentials)
            url, method, data = urljoin(url, form.action), form.method.upper(), form.fields
        raise AssertionError(f"no redirect back to the gateway after {MAX_HOPS} pages")

    async def confirm_logout(self, logout_url: str) -> str:
        """Open the end-session URL, answer "yes" to the provider's question; where it redirects."""
        async with self.http.get(logout_url, allow_redirects=False) as response:
            assert response.status == 200, await response.text()
            form = parse_page(await response.text()).forms[0]
        async with self.http.post(
            urljoin(logout_url, form.action), data={**form.fields, "logout": "yes"}, allow_redirects=False
        ) as response:
            assert response.status in (302, 303), await response.text()
            return response.headers["Location"]


async def start_login(browser: Browser, return_to: str = "/dashboard") -> str:
    """``GET /api/auth/login``: the provider URL the gateway redirects to."""
    answer = await browser.request(
        "GET", f"/api/auth/login?returnTo={return_to}", csrf=False, headers={"Accept": "text/html"}
    )
    assert answer.status == 302, answer.body
    return str(answer.headers["Location"])


async def callback(browser: Browser, callback_url: str) -> Answer:
    """The provider's redirect arriving at the gateway (asking for JSON: failures are problems)."""
    path = callback_url.removeprefix(browser.base)
    return await browser.request("GET", path, csrf=False, headers={"Accept": "application/json"})


async def sign_in(browser: Browser, user: ProviderUser, return_to: str = "/dashboard") -> Answer:
    """The whole sign-in: gateway → provider's login and consent forms → gateway callback."""
    callback_url = await user.sign_in(await start_login(browser, return_to))
    answer = await callback(browser, callback_url)
    assert answer.status == 302, answer.body
    return answer
