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
