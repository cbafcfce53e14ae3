"""The route table, the client address rule, claim header values and the routes' settings checks."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from bffgate.api_url import ApiUrls
from bffgate.config import load_settings
from bffgate.errors import ConfigError
from bffgate.routes import ApiRoute, RouteTable, client_address, forwarded_headers, header_value

BASE = {"remote_api": "http://127.0.0.1:9", "etls_access": "a" * 40, "etls_refresh": "r" * 40}


def table(*prefixes: str) -> RouteTable:
    return RouteTable([ApiRoute(p, ApiUrls("http://127.0.0.1:9"), "none") for p in prefixes])


def test_a_path_finds_its_route_by_prefix_depth() -> None:
    routes = table("/api/billing/", "/files/", "/a/b/c/")
    assert routes.match("/api/billing/x/y") is routes.routes[0]
    assert routes.match("/files/") is routes.routes[1]
    assert routes.match("/a/b/c/d") is routes.routes[2]
    for path in ("/api/billing", "/api/billingx/y", "/api/", "/", "/a/b/x/d", "/files"):
        assert routes.match(path) is None


def test_ten_routes_cost_one_dict_lookup_per_depth() -> None:
    routes = table(*(f"/api/service{n}/" for n in range(10)))
    assert routes._depths == (3,)
    assert routes.match("/api/service7/items").prefix == "/api/service7/"  # type: ignore[union-attr]


def scope(peer: str, forwarded_for: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return {"client": (peer, 50000), "headers": headers}


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # an untrusted peer's header is not believed
        ("10.0.0.2", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the left part was written by the browser
        ("10.0.0.2", "1.2.3.4, 10.0.0.9", "1.2.3.4"),  # two trusted proxies
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "10.0.0.3", "10.0.0.3"),  # only proxies: the farthest one
        ("10.0.0.2", "not-an-ip", None),
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:203.0.113.5", None, "203.0.113.5"),
    ],
)
def test_the_client_address_is_taken_from_trusted_hops_only(
    peer: str, forwarded_for: str | None, client: str | None
) -> None:
    assert client_address(scope(peer, forwarded_for), TRUSTED) == client


def test_forwarded_headers_quote_ipv6() -> None:
    assert forwarded_headers("2001:db8::7") == [
        ("X-Forwarded-For", "2001:db8::7"),
        ("Forwarded", 'for="[2001:db8::7]"'),
    ]


def test_claim_values_cannot_break_a_header() -> None:
    assert header_value("Zoë") == "Zo%C3%AB"
    assert header_value("a\r\nX-Admin: 1") == "a%0D%0AX-Admin: 1"
    assert header_value(["admin", "ops"]) == "admin,ops"
    assert header_value(True) == "true"
    assert header_value("50%") == "50%25"


def test_routes_come_from_bff_routes_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    route = {"prefix": "/api/catalogue/", "upstream": "https://catalogue.example/v1/", "token": "none"}
    monkeypatch.setenv("BFF_ROUTES", json.dumps([route]))
    (loaded,) = load_settings(**BASE).routes
    assert (loaded.prefix, loaded.upstream, loaded.token) == (
        "/api/catalogue/",
        "https://catalogue.example/v1",
        "none",
    )


def test_bff_routes_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BFF_ROUTES", "[{prefix: /api/x/}]")
    with pytest.raises(ConfigError, match=r"^BFF_ROUTES: is not valid JSON; write a JSON list of routes"):
        load_settings(**BASE)


@pytest.mark.parametrize(
    ("routes", "extra", "line"),
    [
        (
            [{"prefix": "/api/auth/x/", "upstream": "http://a", "token": "none"}],
            {},
            "ROUTES[0].prefix: '/api/auth/x/' overlaps",
        ),
        (
            [{"prefix": "/api/", "upstream": "http://a", "token": "none"}],
            {},
            "ROUTES[0].prefix: '/api/' overlaps",
        ),
        (
            [{"prefix": "/x", "upstream": "http://a", "token": "none"}],
            {},
            "ROUTES[0].prefix: must be a path that starts and ends with /",
        ),
        (
            [{"prefix": "/x/../", "upstream": "http://a", "token": "none"}],
            {},
            "ROUTES[0].prefix: must not contain . or ..",
        ),
        (
            [{"prefix": "/x/", "upstream": "file:///etc", "token": "none"}],
            {},
            "ROUTES[0].upstream: must be an absolute http(s) URL",
        ),
        (
            [{"prefix": "/x/", "upstream": "http://a", "token": "admin"}],
            {},
            "ROUTES[0].token: Input should be",
        ),
        ([{"prefix": "/x/", "upstream": "http://a"}], {}, "ROUTES[0].token: is required"),
        (
            [{"prefix": "/x/", "upstream": "http://a", "token": "none", "tokn": 1}],
            {},
            "ROUTES[0].tokn: Extra inputs",
        ),
        (
            [
                {"prefix": "/x/", "upstream": "http://a", "token": "none"},
                {"prefix": "/x/y/", "upstream": "http://b", "token": "none"},
            ],
            {},
            "ROUTES[1].prefix: '/x/y/' overlaps the route '/x/'",
        ),
        (
            [{"prefix": "/x/", "upstream": "http://a", "token": "client"}],
            {},
            "ROUTES[0].client_token_url: is required for token = client with BFF_PROVIDER=rest",
        ),
        (
            [
                {
                    "prefix": "/x/",
                    "upstream": "http://a",
                    "token": "client",
                    "client_token_url": "http://t/token",
                    "client_id": "c",
                }
            ],
            {},
            "ROUTES[0].client_secret: is required with ROUTES[0].client_id",
        ),
        (
            [{"prefix": "/x/", "upstream": "http://a", "token": "none", "scopes": "a"}],
            {},
            "ROUTES[0].scopes: is only used with token = client",
        ),
        (  # on a user route, scopes ask for a per-API token (api_tokens.py): OpenID Connect only
            [{"prefix": "/x/", "upstream": "http://a", "token": "user", "scopes": "a"}],
            {},
            "ROUTES[0].scopes: a per-API token needs BFF_PROVIDER=oidc",
        ),
        (
            [
                {
                    "prefix": "/x/",
                    "upstream": "http://a",
                    "token": "user",
                    "claim_headers": {"X-Tenant": "tenant"},
                }
            ],
            {},
            "ROUTES[0].claim_headers.X-Tenant: the claim 'tenant' is not in the allow-listed",
        ),
        (
            [
                {
                    "prefix": "/x/",
                    "upstream": "http://a",
                    "token": "user",
                    "claim_headers": {"Authorization": "sub"},
                }
            ],
            {},
            "ROUTES[0].claim_headers: 'Authorization' is a header the gateway sets",
        ),
        (
            [
                {
                    "prefix": "/x/",
                    "upstream": "http://a",
                    "token": "user",
                    "claim_headers": {"X-Real-IP": "sub"},
                }
            ],
            {},
            "'X-Real-IP' is a header the gateway sets or drops",
        ),
        (
            [{"prefix": "/x/", "upstream": "http://a", "token": "none", "forward_client_address": True}],
            {},
            "ROUTES[0].forward_client_address: needs BFF_TRUSTED_PROXIES",
        ),
        (
            [],
            {"bff_trusted_proxies": "10.0.0.0/8,nonsense"},
            "BFF_TRUSTED_PROXIES: 'nonsense' is not an IP address",
        ),
    ],
)
def test_route_problems_name_the_key_and_the_fix(
    routes: list[dict[str, Any]], extra: dict[str, Any], line: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**BASE, routes=routes, **extra)
    assert any(problem.startswith(line) or line in problem for problem in str(raised.value).splitlines()), (
        str(raised.value)
    )


def test_a_valid_table_with_every_rule_loads() -> None:
    settings = load_settings(
        **BASE,
        bff_provider="oidc",
        oidc_issuer="https://login.example",
        oidc_client_id="gateway",
        oidc_client_secret="s" * 32,
        bff_trusted_proxies=["10.0.0.0/8", "192.168.1.5"],
        routes=[
            {
                "prefix": "/api/orders/",
                "upstream": "https://orders.example",
                "token": "user",
                "claim_headers": {"X-User-Id": "sub"},
            },
            {
                "prefix": "/api/catalogue/",
                "upstream": "https://shop.example/v2",
                "token": "user-or-none",
                "forward_client_address": True,
            },
            {
                "prefix": "/api/billing/",
                "upstream": "https://billing.example",
                "token": "client",
                "scopes": "billing:read  billing:write",
            },
            {"prefix": "/status/", "upstream": "https://status.example", "token": "none"},
        ],
    )
    assert settings.routes[2].scopes == "billing:read billing:write"
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.168.1.5/32"]
