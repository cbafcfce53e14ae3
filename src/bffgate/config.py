"""Settings: read from the environment, validated at start-up, every problem reported at once.

Field names are the environment variables of DESIGN.md in lower case (pydantic-settings matches them
case-insensitively), so ``Settings(remote_api=...)`` and ``REMOTE_API=...`` mean the same thing, and
so does ``remote_api = "..."`` in the config file (``config_file.py``, read by ``load_settings``).
Secrets are ``SecretStr``: they print as ``'**********'`` in reprs, logs and tracebacks.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsConfigDict, SettingsError

from .config_file import (
    ConfigFile,
    FileBackedSettings,
    config_file_in_use,
    config_path,
    read_config_file,
    setting_names,
    type_fix,
)
from .errors import ConfigError
from .redis_url import parse_redis_url
from .route_settings import RouteSettings, parse_trusted_proxies, route_problems
from .secret_files import values_from_files
from .session import DEFAULT_SESSION_ABSOLUTE
from .tokens import USER_CLAIMS

MIN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16

# How to fix each setting, shown next to its name when it is missing or wrong.
FIXES: dict[str, str] = {
    "remote_api": "set it to the base URL of your API, e.g. https://api.example.com",
    "etls_access": "set it to a random secret of at least 32 characters: `bffgate keygen` prints two",
    "etls_refresh": "set it to a random secret of at least 32 characters: `bffgate keygen` prints two",
    "oidc_issuer": "set it to your provider's issuer URL, e.g. https://login.example.com/realms/app",
    "oidc_client_id": "set it to the client id registered at your provider",
    "bff_login_body": "use json (the default) or form (application/x-www-form-urlencoded, e.g. FastAPI's OAuth2PasswordRequestForm)",
    "bff_refresh_token_in": "use body, form, header (Authorization: Bearer) or cookie (with BFF_REFRESH_COOKIE_NAME)",
    "bff_logout_method": "use POST (the default) or DELETE",
    "bff_log_format": "use text (the default) or json (one JSON object a line)",
    "bff_log_level": "use DEBUG, INFO (the default), WARNING, ERROR or CRITICAL",
    "redis_url": (
        "set it to a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, "
        'e.g. redis://127.0.0.1:6379/0 (see README, "Running several instances")'
    ),
}


# The rest provider's shape settings (an OIDC provider's answers are standard, these never apply there).
REST_SHAPE_SETTINGS = frozenset(
    {
        "bff_login_body",
        "bff_refresh_token_in",
        "bff_refresh_cookie_name",
        "bff_refresh_request_field",
        "bff_expires_at_field",
        "bff_logout_method",
    }
)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"must not contain credentials, a query or a fragment: {value!r}")
    return value  # as written: /api/token/ and /api/token are different endpoints (Django, DRF)


LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_problem(url: str, *, allow_insecure_http: bool) -> str | None:
    """Why ``url`` must not be used for OpenID Connect (plain http off loopback), or None."""
    if urlsplit(url).scheme == "https" or allow_insecure_http or is_loopback(url):
        return None
    return "is plain http (https is required except for loopback addresses, unless OIDC_ALLOW_INSECURE_HTTP=true)"


def listen_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → ``(host, port)``; ``ValueError`` saying what is wrong."""
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port, e.g. 127.0.0.1:9100, got {address!r}")
    return host, int(port)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Settings(FileBackedSettings):
    """All of bffgate's configuration. See the README's configuration reference."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    remote_api: str
    etls_access: SecretStr
    etls_refresh: SecretStr

    bff_provider: Literal["rest", "oidc"] = "rest"
    bff_login_url: str | None = None
    bff_refresh_url: str | None = None
    bff_logout_url: str | None = None
    bff_userinfo_url: str | None = None
    bff_access_token_field: str = "accessToken"
    bff_refresh_token_field: str = "refreshToken"
    bff_expires_in_field: str = "expiresIn"
    # How the rest provider talks to APIs of other shapes (README, "Recipes").
    bff_login_body: Literal["json", "form"] = "json"
    bff_refresh_token_in: Literal["body", "form", "header", "cookie"] = "body"
    bff_refresh_cookie_name: str | None = None
    bff_refresh_request_field: str | None = None
    bff_expires_at_field: str | None = None
    bff_logout_method: Literal["POST", "DELETE"] = "POST"

    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email offline_access"
    oidc_client_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"
    )
    oidc_auth_params: str | None = None
    oidc_post_logout_redirect: str | None = None
    oidc_allow_insecure_http: bool = (
        False  # plain-http issuer and endpoints off loopback (never in production)
    )

    bff_public_url: str = "http://127.0.0.1:8000"
    bff_allowed_origins: str | None = None
    bff_login_page: str = "/login"
    bff_session_store: Literal["cookie", "redis"] = "cookie"
    redis_url: str | None = None

    bff_refresh_skew: float = Field(default=30.0, ge=0)
    bff_upstream_timeout: float = Field(default=30.0, gt=0)
    bff_upstream_max_idle: int = Field(default=2048, ge=0)  # idle API connections kept, all sessions together
    bff_max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    bff_replay_bytes: int = Field(default=1024 * 1024, ge=0)
    bff_cookie_secure: bool = True

    # Beyond the contract's table: lifetimes and the grace window, with the defaults DESIGN.md names.
    bff_session_idle: int = Field(default=7 * 24 * 3600, gt=0)  # refresh cookie, renewed on refresh
    bff_session_absolute: int = Field(default=DEFAULT_SESSION_ABSOLUTE, gt=0)  # hard cap from login
    bff_grace_seconds: float = Field(default=30.0, ge=0)
    bff_pass_upstream_cookies: bool = False  # forward the upstream's Set-Cookie to the browser
    bff_user_claims: str | None = None  # comma-separated allow-list for /api/auth/user (tokens.USER_CLAIMS)
    bff_metrics_token: SecretStr | None = None  # Bearer token for /metrics and /readyz's details
    bff_metrics_address: str | None = None  # host:port of a separate listener for /metrics, /readyz
    bff_admin_token: SecretStr | None = None  # Bearer token for /admin/sessions on the main listener
    # POST /api/auth/login attempts per window, per client address and per username (0: no limit).
    bff_login_window: float = Field(default=300.0, gt=0)
    bff_login_limit_per_client: int = Field(default=30, ge=0)
    bff_login_limit_per_username: int = Field(default=10, ge=0)
    bff_login_username_field: str = "username"
    # Forward-auth: the longest a front proxy may reuse a "yes" (never past the token's refresh point).
    bff_forward_auth_cache_seconds: int = Field(default=5, ge=0)
    # Logs (see bffgate/logs.py): json for collectors, text for a terminal.
    bff_log_format: Literal["text", "json"] = "text"
    bff_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    bff_trust_request_id: bool = False  # take X-Request-ID from the front proxy (else always generated)
    # Live connections (README "Live connections"): the silence allowed between a streamed answer's
    # bytes (SSE, long polls), and the WebSocket limits.
    bff_stream_idle_timeout: float = Field(default=300.0, gt=0)
    bff_ws_max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    bff_ws_max_per_session: int = Field(default=16, gt=0)
    bff_ws_max_per_process: int = Field(default=10_000, gt=0)
    bff_ws_session_check: float = Field(default=30.0, gt=0)  # how often open sockets ask the store
    # More APIs than REMOTE_API, each under its own local prefix with its own token rule (README, "Routes").
    routes: list[RouteSettings] = Field(
        default_factory=list, validation_alias=AliasChoices("routes", "bff_routes")
    )
    # The proxies in front of bffgate whose X-Forwarded-For is believed (routes' forward_client_address).
    bff_trusted_proxies: str | None = None

    @field_validator("remote_api", "bff_public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        # Bases that paths are appended to: without the trailing slash, "/auth/login" joins cleanly.
        return _http_url(value).rstrip("/")

    @field_validator("oidc_issuer", "bff_login_url", "bff_refresh_url", "bff_logout_url", "bff_userinfo_url")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("/"):
            return value  # a path under REMOTE_API, joined in the model validator
        return _http_url(value)

    @field_validator(
        "bff_access_token_field", "bff_refresh_token_field", "bff_expires_in_field", "bff_expires_at_field"
    )
    @classmethod
    def _field_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (value == "" and info.field_name == "bff_expires_at_field"):
            return None  # unset (an empty variable counts as unset for the optional one)
        if any(not segment.strip() for segment in value.split(".")):
            raise ValueError(
                f"must be a field name or a dotted path such as data.tokens.access, got {value!r}"
            )
        return value

    @field_validator("bff_refresh_cookie_name", "bff_refresh_request_field")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.isprintable() or any(c in value for c in ' ;=,"'):
            raise ValueError(f"must be a plain name without spaces, quotes, ';', ',' or '=', got {value!r}")
        return value

    @field_validator("bff_metrics_token", "bff_admin_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH or " " in value.get_secret_value():
            raise ValueError(f"must be at least {MIN_METRICS_TOKEN_LENGTH} characters, without spaces")
        return value

    @field_validator("bff_metrics_address")
    @classmethod
    def _listen_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        listen_address(value)  # ValueError: the message says what is wrong
        return value

    @field_validator("etls_access", "etls_refresh")
    @classmethod
    def _strong_secrets(cls, value: SecretStr) -> SecretStr:
        secrets = [part.strip() for part in value.get_secret_value().split(",")]
        if not secrets or any(len(secret) < MIN_SECRET_LENGTH for secret in secrets):
            raise ValueError(f"every comma-separated secret must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("bff_login_page")
    @classmethod
    def _local_path(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//"):
            raise ValueError("must be a path on this site, starting with a single /")
        return value

    @field_validator("bff_trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: Any) -> str | None:
        return parse_trusted_proxies(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            parse_redis_url(value)  # ValueError: the message names what is wrong
        return value or None

    @model_validator(mode="after")
    def _mode_requirements(self) -> Settings:
        problems = []
        if self.bff_provider == "oidc" and not self.oidc_issuer:
            problems.append("OIDC_ISSUER: is required when BFF_PROVIDER=oidc")
        insecure = self.oidc_issuer and transport_problem(
            self.oidc_issuer, allow_insecure_http=self.oidc_allow_insecure_http
        )
        if self.bff_provider == "oidc" and insecure:
            problems.append(f"OIDC_ISSUER: {insecure}")
        if self.bff_provider == "oidc" and not self.oidc_client_id:
            problems.append("OIDC_CLIENT_ID: is required when BFF_PROVIDER=oidc")
        if self.bff_session_store == "redis" and not self.redis_url:
            problems.append("REDIS_URL: is required when BFF_SESSION_STORE=redis")
        problems += self._rest_shape_problems()
        problems += route_problems(
            self.routes,
            provider=self.bff_provider,
            user_claims=self.user_claims,
            oidc_client_id=self.oidc_client_id,
            oidc_client_secret=self.oidc_client_secret,
            trusted_proxies=self.bff_trusted_proxies,
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _rest_shape_problems(self) -> list[str]:
        """Combinations of the rest provider's shape settings that cannot work, one line each."""
        given = self.model_fields_set
        problems = []
        if self.bff_refresh_token_in == "cookie" and not self.bff_refresh_cookie_name:
            problems.append(
                "BFF_REFRESH_COOKIE_NAME: is required when BFF_REFRESH_TOKEN_IN=cookie; "
                "set it to the name of the cookie your API sets on login"
            )
        if self.bff_refresh_cookie_name and self.bff_refresh_token_in != "cookie":
            problems.append(
                "BFF_REFRESH_COOKIE_NAME: is only used with BFF_REFRESH_TOKEN_IN=cookie; "
                "set BFF_REFRESH_TOKEN_IN=cookie or remove BFF_REFRESH_COOKIE_NAME"
            )
        if self.bff_refresh_request_field and self.bff_refresh_token_in not in ("body", "form"):
            problems.append(
                "BFF_REFRESH_REQUEST_FIELD: is only used with BFF_REFRESH_TOKEN_IN=body or form; "
                f"remove it (with {self.bff_refresh_token_in} the refresh token is not a field)"
            )
        if self.bff_expires_at_field and "bff_expires_in_field" in given:
            problems.append(
                "BFF_EXPIRES_AT_FIELD: cannot be combined with BFF_EXPIRES_IN_FIELD; "
                "set only the one your API's answer has (absolute expiry or lifetime in seconds)"
            )
        rest_only = sorted(given & REST_SHAPE_SETTINGS)
        if self.bff_provider == "oidc" and rest_only:
            problems.append(
                f"{rest_only[0].upper()}: applies to BFF_PROVIDER=rest only; "
                "remove it (an OpenID Connect provider's token answers have a fixed shape)"
            )
        return problems

    # Derived values, computed once: the hot path reads them on every request.

    def _under_api(self, value: str | None, default_path: str | None) -> str | None:
        if value is None:
            return None if default_path is None else self.remote_api + default_path
        return self.remote_api + value if value.startswith("/") else value

    @cached_property
    def login_url(self) -> str:
        return self._under_api(self.bff_login_url, "/auth/login") or ""

    @cached_property
    def refresh_url(self) -> str:
        return self._under_api(self.bff_refresh_url, "/auth/refresh") or ""

    @cached_property
    def logout_url(self) -> str | None:
        return self._under_api(self.bff_logout_url, None)

    @cached_property
    def userinfo_url(self) -> str | None:
        return self._under_api(self.bff_userinfo_url, None)

    @cached_property
    def refresh_request_field(self) -> str:
        """The refresh-token field of refresh and logout requests: by default the answer's field name."""
        return self.bff_refresh_request_field or self.bff_refresh_token_field.rsplit(".", 1)[-1]

    @cached_property
    def access_secrets(self) -> list[str]:
        return [s.strip() for s in self.etls_access.get_secret_value().split(",")]

    @cached_property
    def refresh_secrets(self) -> list[str]:
        return [s.strip() for s in self.etls_refresh.get_secret_value().split(",")]

    @cached_property
    def public_origin(self) -> str:
        return _origin(self.bff_public_url)

    @cached_property
    def allowed_origins(self) -> frozenset[str]:
        if not self.bff_allowed_origins:
            return frozenset({self.public_origin})
        return frozenset(_origin(o.strip()) for o in self.bff_allowed_origins.split(",") if o.strip())

    @cached_property
    def user_claims(self) -> frozenset[str]:
        if self.bff_user_claims is None:
            return frozenset(USER_CLAIMS)
        return frozenset(claim.strip() for claim in self.bff_user_claims.split(",") if claim.strip())

    @cached_property
    def trusted_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``BFF_TRUSTED_PROXIES`` as networks (none: nothing in front of bffgate is believed)."""
        value = self.bff_trusted_proxies
        if value is None or value == "none":
            return ()
        return tuple(ipaddress.ip_network(item, strict=False) for item in value.split(","))

    @cached_property
    def post_logout_redirect(self) -> str:
        return self.oidc_post_logout_redirect or self.bff_public_url + "/"


class ServerSettings(FileBackedSettings):
    """Bounds of the HTTP server in front of the app (``bffgate.server``), not of the app itself.

    Separate from ``Settings`` because the server reads them, per process, before any app exists:
    ``create_app`` ignores them, and a server other than ``bffgate.server``'s must set its own.
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    bff_max_head_bytes: int = Field(default=64 * 1024, ge=1024)  # request line + header fields
    bff_head_timeout: float = Field(default=20.0, gt=0)  # seconds to receive a whole head
    bff_max_idle_connections: int = Field(default=1024, gt=0)  # per process, waiting for a head


SettingsT = TypeVar("SettingsT", bound=FileBackedSettings)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from ``overrides``, the environment and the config file, or raise ``ConfigError``
    listing all problems.

    A setting can also come from a file named by ``NAME_FILE`` (see ``secret_files.py``), and the whole
    set from the TOML file named by ``BFF_CONFIG`` (see ``config_file.py``), below the environment.
    """
    return load_model(Settings, overrides)


def load_server_settings(**overrides: Any) -> ServerSettings:
    """The server's bounds from the environment and the config file (and ``overrides``), or ``ConfigError``."""
    return load_model(ServerSettings, overrides)


def load_model(
    model: type[SettingsT], overrides: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> SettingsT:
    """``model`` from every source, or ``ConfigError`` with a line per problem (file's and values' alike)."""
    from_files = values_from_files(model.model_fields, environ, given=overrides)
    # The file may hold any model's keys: the server's bounds sit next to the app's settings.
    known = {**ServerSettings.model_fields, **Settings.model_fields, **model.model_fields}
    given = _given_names(known, {**environ, **overrides})
    path = config_path(environ)
    config = read_config_file(path, known, given=given) if path is not None else None
    problems = list(config.problems) if config else []
    settings = None
    try:
        with config_file_in_use(config):
            settings = model(**{**from_files, **overrides})
    except SettingsError as exc:  # a JSON-valued variable (BFF_ROUTES) that is not JSON
        problems.append(_not_json(exc))
    except ValidationError as exc:
        unread = config.unread if config else set()
        problems += [
            _explain(dict(error), config, given, known)
            for error in exc.errors()
            if not (error["type"] == "missing" and _dotted(error["loc"]) in unread)
        ]
    if problems or settings is None:
        raise ConfigError("\n".join(problems))
    return settings


def _not_json(exc: SettingsError) -> str:
    if '"routes"' in str(exc):
        return (
            "BFF_ROUTES: is not valid JSON; write a JSON list of routes, e.g. "
            '[{"prefix": "/api/billing/", "upstream": "https://billing.example", "token": "user"}]'
        )
    return str(exc)


def _given_names(fields: Mapping[str, FieldInfo], environ: Mapping[str, Any]) -> dict[str, str]:
    """The settings the environment (or the caller) sets, as ``NAME`` or ``NAME_FILE``: they override
    the config file. Every name a setting is known by maps to the variable that sets it."""
    upper = {key.upper() for key in environ}
    given: dict[str, str] = {}
    for name, info in fields.items():
        names = setting_names(name, info)
        found = [alias.upper() for alias in sorted(names) if {alias.upper(), alias.upper() + "_FILE"} & upper]
        given.update(dict.fromkeys(names, found[0]) if found else {})
    return given


def _explain(
    error: dict[str, Any],
    config: ConfigFile | None,
    given: Mapping[str, str],
    fields: Mapping[str, FieldInfo],
) -> str:
    """One line for one problem: the setting's name (its key in the config file when it came from
    there, or is missing and a file is in use), what is wrong and how to fix it."""
    location = [part for part in error.get("loc", ()) if part != "__root__"]
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if not location:  # a model-level check: its lines already start with the variable's name
        return "\n".join(_attribute(line, config, given, fields) for line in message.splitlines())
    name, path = str(location[0]), _dotted(location)
    if error.get("type") == "missing":
        message = "is required"
    fix = FIXES.get(name) if len(location) == 1 else None
    if config is None or name in given:
        variable = given.get(name, name.upper())
        return f"{variable}{path[len(name) :]}: {message}" + (f"; {fix}" if fix else "")
    top_level = fields.get(name) if len(location) == 1 else None
    fix = fix or type_fix(str(error.get("type")), path, top_level)
    return config.line(path, _as_keys(message, fields) + (f"; {_as_keys(fix, fields)}" if fix else ""))


def _dotted(location: Sequence[int | str]) -> str:
    """A validation error's location as the config file's key path: ``routes[1].prefix``."""
    return str(location[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location[1:])


def _attribute(
    line: str, config: ConfigFile | None, given: Mapping[str, str], fields: Mapping[str, FieldInfo]
) -> str:
    """A model-level line ``NAME: …`` as the file's ``file: name: …`` when the file is where to fix it."""
    name, colon, rest = line.partition(": ")
    if config is None or not colon or name.lower() not in fields or name.lower() in given:
        return line
    return config.line(name.lower(), _as_keys(rest, fields))


def _as_keys(text: str, fields: Mapping[str, FieldInfo]) -> str:
    """Setting names in a message as the file writes them (``BFF_PROVIDER=oidc`` → ``bff_provider=oidc``)."""
    return re.sub(r"\b[A-Z][A-Z0-9_]+\b", lambda m: m[0].lower() if m[0].lower() in fields else m[0], text)
