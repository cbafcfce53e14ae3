"""The recipes in examples/forward-auth/ are what `bffgate forward-auth-config` prints (the output the
real-server tests run), for the settings their header names."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fronts import generated_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "forward-auth"


# The routed examples: one route per token rule that works without a session; a claim header name
# (the recipes strip the browser's: forward-auth does not set claim headers).
ROUTES = (
    '[{"prefix": "/api/catalogue/", "upstream": "http://127.0.0.1:9001/shop", "token": "user-or-none",'
    ' "claim_headers": {"X-User-Id": "sub"}},'
    ' {"prefix": "/api/status/", "upstream": "http://127.0.0.1:9002", "token": "none"}]'
)


@pytest.mark.parametrize(
    ("kind", "name", "env"),
    [
        ("nginx", "nginx.conf", {}),
        ("caddy", "Caddyfile", {}),
        ("nginx", "nginx-routes.conf", {"BFF_ROUTES": ROUTES}),
        ("caddy", "Caddyfile-routes", {"BFF_ROUTES": ROUTES}),
    ],
)
def test_the_example_is_the_generated_config(kind: str, name: str, env: dict[str, str]) -> None:
    printed = generated_config(
        kind,
        api_url="http://127.0.0.1:9000",
        public_url="http://127.0.0.1:8000",
        listen="127.0.0.1:8080",
        bffgate="127.0.0.1:8000",
        state="/var/lib/bffgate-front",
        env=env,
    )
    assert (EXAMPLES / name).read_text() == printed, f"regenerate examples/forward-auth/{name} (README)"
