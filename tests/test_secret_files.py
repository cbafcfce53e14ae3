"""Settings from files (``NAME_FILE``): how container secrets reach the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from bffgate import ConfigError, load_settings
from bffgate.secret_files import values_from_files

ACCESS = "a" * 40
REFRESH = "r" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMOTE_API", "ETLS_ACCESS", "ETLS_REFRESH", "REDIS_URL", "OIDC_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name + "_FILE", raising=False)
    monkeypatch.setenv("REMOTE_API", "https://api.example.com")


def secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_secrets_come_from_files_without_their_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ETLS_ACCESS_FILE, ETLS_REFRESH_FILE, OIDC_CLIENT_SECRET_FILE and REDIS_URL_FILE give the settings
    the files' contents, less the newline `echo` or `kubectl create secret --from-file` leaves."""
    monkeypatch.setenv("ETLS_ACCESS_FILE", secret_file(tmp_path, "access", ACCESS + "\n"))
    monkeypatch.setenv("ETLS_REFRESH_FILE", secret_file(tmp_path, "refresh", REFRESH + "\r\n"))
    monkeypatch.setenv("OIDC_CLIENT_SECRET_FILE", secret_file(tmp_path, "client", "s3cret \n"))
    monkeypatch.setenv("REDIS_URL_FILE", secret_file(tmp_path, "redis", "redis://:pw@127.0.0.1:6379/11"))
    settings = load_settings()
    assert settings.access_secrets == [ACCESS]
    assert settings.refresh_secrets == [REFRESH]
    assert settings.oidc_client_secret is not None
    assert settings.oidc_client_secret.get_secret_value() == "s3cret "  # inner spaces are the value's
    assert settings.redis_url == "redis://:pw@127.0.0.1:6379/11"


def test_a_missing_file_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that does not exist stops start-up with a line naming the variable and the path."""
    missing = tmp_path / "nowhere" / "etls_access"
    monkeypatch.setenv("ETLS_ACCESS_FILE", str(missing))
    monkeypatch.setenv("ETLS_REFRESH", REFRESH)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"ETLS_ACCESS_FILE: cannot read {missing} (No such file or directory); "
        "mount the file there or fix the path"
    )


def test_a_setting_given_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NAME and NAME_FILE together are an error (which one wins would be a guess), listed per variable."""
    monkeypatch.setenv("ETLS_ACCESS", ACCESS)
    monkeypatch.setenv("ETLS_ACCESS_FILE", secret_file(tmp_path, "access", ACCESS))
    monkeypatch.setenv("ETLS_REFRESH", REFRESH)
    monkeypatch.setenv("ETLS_REFRESH_FILE", secret_file(tmp_path, "refresh", REFRESH))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).splitlines() == [
        "ETLS_ACCESS: both ETLS_ACCESS and ETLS_ACCESS_FILE are set; keep only one of them",
        "ETLS_REFRESH: both ETLS_REFRESH and ETLS_REFRESH_FILE are set; keep only one of them",
    ]


def test_an_empty_file_or_path_is_refused(tmp_path: Path) -> None:
    """An empty secret file (or a blank line only) and an empty path are mistakes, not empty values."""
    blank = secret_file(tmp_path, "blank", "\n")
    with pytest.raises(ConfigError) as caught:
        values_from_files(["etls_access", "redis_url"], {"ETLS_ACCESS_FILE": blank, "REDIS_URL_FILE": ""})
    assert str(caught.value).splitlines() == [
        f"ETLS_ACCESS_FILE: {blank} is empty; put the value of ETLS_ACCESS in it",
        "REDIS_URL_FILE: is empty; set it to the path of the file holding REDIS_URL",
    ]


def test_a_directory_or_binary_file_is_named(tmp_path: Path) -> None:
    """A directory where a file belongs, or bytes that are not text, name the variable too."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError) as caught:
        values_from_files(
            ["etls_access", "etls_refresh"],
            {"ETLS_ACCESS_FILE": str(tmp_path), "ETLS_REFRESH_FILE": str(binary)},
        )
    assert str(caught.value).splitlines() == [
        f"ETLS_ACCESS_FILE: cannot read {tmp_path} (Is a directory); mount the file there or fix the path",
        f"ETLS_REFRESH_FILE: {binary} is not UTF-8 text",
    ]


def test_explicit_values_win_and_their_files_are_not_read(tmp_path: Path) -> None:
    """A value passed to load_settings() is used as is; its NAME_FILE is not even opened."""
    found = values_from_files(
        ["etls_access", "etls_refresh"],
        {"etls_access_file": str(tmp_path / "absent"), "ETLS_REFRESH_FILE": secret_file(tmp_path, "r", "x")},
        given={"etls_access": ACCESS},
    )
    assert found == {"etls_refresh": "x"}  # lower-case variable names count too, as for settings


def test_the_value_never_appears_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret read from a file that fails validation is reported by name, never by value."""
    monkeypatch.setenv("ETLS_ACCESS_FILE", secret_file(tmp_path, "access", "short-secret-value\n"))
    monkeypatch.setenv("ETLS_REFRESH", REFRESH)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("ETLS_ACCESS: every comma-separated secret must be at least 32")
    assert "short-secret-value" not in str(caught.value)
