"""Settings: defaults, derived values, and clear start-up errors."""

from __future__ import annotations

import pytest

from bffgate import ConfigError, load_settings

GOOD = {"remote_api": "https://api.example.com/v1/", "etls_access": "a" * 32, "etls_refresh": "r" * 32}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REMOTE_API",
        "ETLS_ACCESS",
        "ETLS_REFRESH",
        "BFF_PROVIDER",
        "REDIS_URL",
        "BFF_SESSION_STORE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_derived_urls() -> None:
    """Endpoints default to paths under REMOTE_API, which loses its trailing slash."""
    settings = load_settings(**GOOD)
    assert settings.remote_api == "https://api.example.com/v1"
    assert settings.login_url == "https://api.example.com/v1/auth/login"
    assert settings.refresh_url == "https://api.example.com/v1/auth/refresh"
    assert settings.logout_url is None
    assert settings.allowed_origins == frozenset({"http://127.0.0.1:8000"})
    assert settings.bff_refresh_skew == 30
    assert settings.bff_max_body_bytes == 10 * 1024 * 1024


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract's environment variable names configure the gateway."""
    monkeypatch.setenv("REMOTE_API", "http://api.test")
    monkeypatch.setenv("ETLS_ACCESS", "x" * 40)
    monkeypatch.setenv("ETLS_REFRESH", "y" * 40 + ",z" + "z" * 40)
    monkeypatch.setenv("BFF_LOGOUT_URL", "/auth/logout")
    monkeypatch.setenv("BFF_ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com/")
    settings = load_settings()
    assert settings.logout_url == "http://api.test/auth/logout"
    assert settings.refresh_secrets == ["y" * 40, "z" * 41]
    assert settings.allowed_origins == {"https://app.example.com", "https://admin.example.com"}


def test_secrets_are_masked() -> None:
    """Secrets never show in the settings' repr."""
    settings = load_settings(**GOOD)
    assert "a" * 32 not in repr(settings)
    assert "r" * 32 not in str(settings)


@pytest.mark.parametrize(
    ("overrides", "expected_line"),
    [
        ({"remote_api": None}, "REMOTE_API: is required"),
        ({"remote_api": "ftp://x"}, "REMOTE_API: must be an absolute http(s) URL"),
        ({"remote_api": "https://user:pw@api.example.com"}, "REMOTE_API: must not contain credentials"),
        (
            {"etls_access": "short"},
            "ETLS_ACCESS: every comma-separated secret must be at least 32 characters",
        ),
        ({"etls_refresh": "r" * 32 + ",short"}, "ETLS_REFRESH: every comma-separated secret"),
        ({"bff_provider": "saml"}, "BFF_PROVIDER:"),
        ({"bff_login_page": "https://evil.example"}, "BFF_LOGIN_PAGE: must be a path on this site"),
        ({"bff_session_store": "redis"}, "REDIS_URL: is required when BFF_SESSION_STORE=redis"),
        ({"bff_provider": "oidc"}, "OIDC_ISSUER: is required when BFF_PROVIDER=oidc"),
        ({"bff_refresh_skew": -1}, "BFF_REFRESH_SKEW:"),
        ({"bff_login_body": "xml"}, "BFF_LOGIN_BODY: Input should be 'json' or 'form'"),
        ({"bff_refresh_token_in": "query"}, "BFF_REFRESH_TOKEN_IN: Input should be"),
        (
            {"bff_refresh_token_in": "cookie"},
            "BFF_REFRESH_COOKIE_NAME: is required when BFF_REFRESH_TOKEN_IN=cookie; set it to the name",
        ),
        (
            {"bff_refresh_cookie_name": "refresh_token"},
            "BFF_REFRESH_COOKIE_NAME: is only used with BFF_REFRESH_TOKEN_IN=cookie",
        ),
        (
            {"bff_refresh_token_in": "header", "bff_refresh_request_field": "refresh"},
            "BFF_REFRESH_REQUEST_FIELD: is only used with BFF_REFRESH_TOKEN_IN=body or form",
        ),
        (
            {"bff_expires_at_field": "expires_at", "bff_expires_in_field": "expires_in"},
            "BFF_EXPIRES_AT_FIELD: cannot be combined with BFF_EXPIRES_IN_FIELD",
        ),
        (
            {"bff_access_token_field": "data..access"},
            "BFF_ACCESS_TOKEN_FIELD: must be a field name or a dotted",
        ),
        ({"bff_refresh_cookie_name": "a b"}, "BFF_REFRESH_COOKIE_NAME: must be a plain name"),
        (
            {
                "bff_provider": "oidc",
                "oidc_issuer": "https://id.example",
                "oidc_client_id": "c",
                "bff_login_body": "form",
            },
            "BFF_LOGIN_BODY: applies to BFF_PROVIDER=rest only",
        ),
    ],
)
def test_bad_settings_name_the_variable(overrides: dict[str, object], expected_line: str) -> None:
    """Each problem is one line that starts with the variable's name and says what is wrong."""
    values = {**GOOD, **overrides}
    with pytest.raises(ConfigError) as caught:
        load_settings(**{k: v for k, v in values.items() if v is not None})
    lines = str(caught.value).splitlines()
    assert any(line.startswith(expected_line) for line in lines), lines


def test_all_problems_are_reported_at_once() -> None:
    """Several bad settings produce one line each, in one error."""
    with pytest.raises(ConfigError) as caught:
        load_settings(etls_access="short")
    lines = str(caught.value).splitlines()
    assert {line.split(":")[0] for line in lines} == {"REMOTE_API", "ETLS_ACCESS", "ETLS_REFRESH"}
    assert "bffgate keygen" in str(caught.value)


def test_endpoint_urls_are_used_as_written() -> None:
    """An absolute endpoint URL keeps its trailing slash (Django's /api/token/ is not /api/token)."""
    settings = load_settings(**GOOD, bff_login_url="https://auth.example.com/api/token/")
    assert settings.login_url == "https://auth.example.com/api/token/"
    settings = load_settings(**GOOD, bff_refresh_url="/api/token/refresh/")
    assert settings.refresh_url == "https://api.example.com/v1/api/token/refresh/"


def test_rest_shape_settings_have_working_defaults() -> None:
    """JSON login, refresh token in a JSON body field named like the answer's (last path segment)."""
    settings = load_settings(**GOOD)
    assert (settings.bff_login_body, settings.bff_refresh_token_in) == ("json", "body")
    assert settings.refresh_request_field == "refreshToken"
    assert settings.bff_expires_at_field is None
    nested = load_settings(
        **GOOD, bff_refresh_token_field="data.tokens.refreshToken", bff_expires_at_field="expires_at"
    )
    assert nested.refresh_request_field == "refreshToken"
    assert nested.bff_expires_at_field == "expires_at"
    named = load_settings(**GOOD, bff_refresh_token_field="refresh", bff_refresh_request_field="token")
    assert named.refresh_request_field == "token"
